-- study.lua — the whole study (DESIGN.md 1): the three problems, each run
-- into DIR/<name>/, their results concatenated in DIR/results.csv.
--   recall run specs/experiments/study.lua -j 2 [--set L=32] [--resume]
return {
  name = "study",
  title = "Associative recall: transformers, Mamba and a hybrid",
  experiments = {"p1_induction.lua", "p2_multiquery.lua", "p3_embedding.lua"},
}

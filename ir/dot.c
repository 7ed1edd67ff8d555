/* dot.c — the graph as Graphviz dot, for `recall ir --format dot`. */
#include "ir.h"

static void quoted(FILE *out, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', out);
    fputc(*s, out);
  }
}

void ir_print_dot(FILE *out, const ir_func *f) {
  fprintf(out, "digraph recall {\n  rankdir=TB;\n"
               "  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
  for (int i = 0; i < f->n_nodes; i++) {
    const ir_node *n = &f->nodes[i];
    char t[96];
    ir_type_str(&n->type, t, sizeof t);
    const char *style = n->op == IR_OP_PARAM   ? ", style=filled, fillcolor=\"#dbe9f6\""
                        : n->op == IR_OP_INPUT ? ", style=filled, fillcolor=\"#e6f4d7\""
                        : n->op == IR_OP_CONST ? ", style=filled, fillcolor=\"#eeeeee\""
                                               : "";
    fprintf(out, "  n%d [label=\"%%%d %s", i, i, ir_op_name(n->op));
    if (n->name) {
      fputs(" \\\"", out);
      quoted(out, n->name);
      fputs("\\\"", out);
    }
    if (n->op == IR_OP_FILL) fprintf(out, " %g", n->attr.value);
    fprintf(out, "\\n%s\"%s];\n", t, style);
    for (int k = 0; k < n->n_in; k++)
      fprintf(out, "  n%d -> n%d;\n", n->in[k], i);
  }
  for (int i = 0; i < f->n_outs; i++) {
    fprintf(out, "  out%d [shape=ellipse, label=\"", i);
    quoted(out, f->outs[i].name);
    fprintf(out, "\"];\n  n%d -> out%d;\n", f->outs[i].node, i);
  }
  fputs("}\n", out);
}

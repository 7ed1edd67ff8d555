/* checkpoint.c — a model's parameters by name in a safetensors file, with
 * the run's config, model name and spec in the metadata. */
#include "runtime.h"

#include <stdio.h>
#include <string.h>

static const char *const FORMAT = "recall-checkpoint-1";

int rt_checkpoint_save(rt_model *m, const char *path, const char *model,
                       const char *spec, const char *config_json,
                       ir_error *err) {
  rt_tensors *ts = rt_tensors_new();
  int rc = 0;
  for (int i = 0; i < rt_model_n_params(m) && rc == 0; i++) {
    const rt_param *p = rt_model_param(m, i);
    int64_t dim[RT_MAX_RANK];
    for (int a = 0; a < p->type.rank; a++) dim[a] = p->type.dim[a];
    if (!rt_tensors_add(ts, p->name, RT_F32, p->type.rank, dim,
                        rt_model_params(m) + p->offset, err))
      rc = -1;
  }
  rt_meta_set(ts, "format", FORMAT);
  rt_meta_set(ts, "config", config_json ? config_json : "{}");
  rt_meta_set(ts, "model", model ? model : "");
  rt_meta_set(ts, "spec", spec ? spec : "");
  if (rc == 0) rc = rt_st_write(path, ts, err);
  rt_tensors_free(ts);
  return rc;
}

rt_tensors *rt_checkpoint_read(const char *path, ir_error *err) {
  rt_tensors *ts = rt_st_read(path, err);
  if (!ts) return NULL;
  const char *f = rt_meta_get(ts, "format");
  if (!f || strcmp(f, FORMAT) != 0 || !rt_meta_get(ts, "config") ||
      !rt_meta_get(ts, "spec")) {
    ir_err(err, "%s: not a recall checkpoint (its metadata has no "
           "\"format\": \"%s\" with \"config\" and \"spec\")", path, FORMAT);
    rt_tensors_free(ts);
    return NULL;
  }
  return ts;
}

/* "F32[24,8]", the way rt_tensor_type_str shows the file's side. */
static char *param_type_str(const rt_param *p, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "F32[");
  for (int a = 0; a < p->type.rank && k < n; a++)
    k += (size_t)snprintf(buf + k, n - k, a ? ",%d" : "%d", p->type.dim[a]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

int rt_checkpoint_load(rt_model *m, rt_tensors *ck, ir_error *err) {
  const char *src = ck->source && *ck->source ? ck->source : "checkpoint";
  char a[96], b[96];
  for (int i = 0; i < rt_model_n_params(m); i++) {
    const rt_param *p = rt_model_param(m, i);
    rt_tensor *t = rt_tensors_find(ck, p->name);
    param_type_str(p, b, sizeof b);
    if (!t) {
      ir_err(err, "%s: not a checkpoint of this model: it has no parameter "
             "\"%s\" (the model's is %s)", src, p->name, b);
      return -1;
    }
    bool same = t->rank == p->type.rank &&
                (t->dtype == RT_F32 || t->dtype == RT_F64);
    for (int d = 0; same && d < t->rank; d++) same = t->dim[d] == p->type.dim[d];
    if (!same) {
      ir_err(err, "%s: not a checkpoint of this model: parameter \"%s\" is %s "
             "there, the model's is %s", src, p->name,
             rt_tensor_type_str(t, a, sizeof a), b);
      return -1;
    }
  }
  for (int j = 0; j < ck->n; j++)
    if (rt_model_find_param(m, ck->t[j]->name) < 0) {
      ir_err(err, "%s: not a checkpoint of this model: it has a tensor \"%s\" "
             "that is not a parameter of the model", src, ck->t[j]->name);
      return -1;
    }
  for (int i = 0; i < rt_model_n_params(m); i++) {
    rt_tensor *t = rt_tensors_find(ck, rt_model_param(m, i)->name);
    if (t->dtype == RT_F64 && rt_tensor_convert(t, RT_F32, err) < 0) return -1;
  }
  for (int i = 0; i < rt_model_n_params(m); i++) {
    const rt_param *p = rt_model_param(m, i);
    const rt_tensor *t = rt_tensors_find(ck, p->name);
    memcpy(rt_model_params(m) + p->offset, t->data, sizeof(float) * p->numel);
  }
  return 0;
}

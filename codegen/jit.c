/* jit.c — the public face of codegen: plan, lower, optimise (new pass
 * manager with a host TargetMachine, so loops vectorise for the host's
 * SIMD width), emit an object file and link it into the process's one ORC
 * LLJIT. Also the text dumps (LLVM IR, assembly) for `recall llvm`. */
#include "cgint.h"

#include <llvm-c/Error.h>
#include <llvm-c/Support.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cg_module {
  cg_kernel_fn fn;
  LLVMOrcResourceTrackerRef rt; /* frees the machine code */
  int n_leaves, n_nodes, n_outs;
  int *leaf_node, *leaf_of;
  float **const_data; /* per leaf: a copy of a const's data, or NULL */
  uint64_t *prof;      /* opt->profile: cycles per node, in JIT memory */
  size_t arena;
  cg_stats st;
};

/* Compiles may run concurrently: each has its own LLVMContext and its own
 * TargetMachine for the passes; the lock guards only the shared JIT's
 * creation and the name counter (ORC itself is thread-safe). */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t targets_once = PTHREAD_ONCE_INIT;
static LLVMOrcLLJITRef jit;  /* one per process, created lazily */
static unsigned long serial; /* unique kernel names */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int llvm_fail(LLVMErrorRef e, const char *what, ir_error *err) {
  if (!e) return 0;
  char *m = LLVMGetErrorMessage(e);
  ir_err(err, "codegen: %s: %.400s", what, m);
  LLVMDisposeErrorMessage(m);
  return -1;
}

/* RECALL_LLVM_ARGS (e.g. "-time-passes"): LLVM's own options, for
 * studying the compiler; parsed once. */
static void init_targets(void) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  const char *env = getenv("RECALL_LLVM_ARGS");
  if (env && *env) {
    enum { MAX_ARGS = 32 };
    char *copy = strdup(env), *save = NULL;
    const char *argv[MAX_ARGS + 1] = {"recall"};
    int argc = 1;
    for (char *t = strtok_r(copy, " ", &save); t && argc < MAX_ARGS;
         t = strtok_r(NULL, " ", &save))
      argv[argc++] = t;
    LLVMParseCommandLineOptions(argc, argv, NULL);
    /* copy stays: LLVM may keep pointers into it */
  }
}

/* A TargetMachine for cpu (NULL: the host, with its features). */
static LLVMTargetMachineRef make_tm(const char *cpu, ir_error *err) {
  pthread_once(&targets_once, init_targets);
  char *triple = LLVMGetDefaultTargetTriple(), *msg = NULL;
  LLVMTargetRef t;
  if (LLVMGetTargetFromTriple(triple, &t, &msg)) {
    ir_err(err, "codegen: no LLVM target for %s: %.300s", triple, msg);
    LLVMDisposeMessage(msg);
    LLVMDisposeMessage(triple);
    return NULL;
  }
  char *hcpu = cpu ? NULL : LLVMGetHostCPUName();
  char *feat = cpu ? NULL : LLVMGetHostCPUFeatures();
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(
      t, triple, cpu ? cpu : hcpu, feat ? feat : "", LLVMCodeGenLevelAggressive,
      LLVMRelocPIC, LLVMCodeModelDefault);
  if (!tm) ir_err(err, "codegen: cannot create a target machine for %s", triple);
  LLVMDisposeMessage(hcpu);
  LLVMDisposeMessage(feat);
  LLVMDisposeMessage(triple);
  return tm;
}

static int jit_init(ir_error *err) {
  if (jit) return 0;
  pthread_once(&targets_once, init_targets);
  LLVMOrcJITTargetMachineBuilderRef jtmb;
  if (llvm_fail(LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb), "host detection", err))
    return -1;
  LLVMOrcLLJITBuilderRef b = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(b, jtmb);
  if (llvm_fail(LLVMOrcCreateLLJIT(&jit, b), "creating the JIT", err)) {
    jit = NULL;
    return -1;
  }
  return 0;
}

/* The JIT (created on first use) and a fresh kernel name. */
static LLVMOrcLLJITRef jit_get(char *name, size_t n, ir_error *err) {
  pthread_mutex_lock(&lock);
  LLVMOrcLLJITRef j = jit_init(err) ? NULL : jit;
  snprintf(name, n, "recall_kernel_%lu", ++serial);
  pthread_mutex_unlock(&lock);
  return j;
}

static int run_passes(LLVMModuleRef M, const cg_options *opt,
                      LLVMTargetMachineRef tm, ir_error *err) {
  /* RECALL_PASSES overrides the default pipeline: for studying it */
  const char *env = getenv("RECALL_PASSES");
  const char *passes = opt && opt->passes ? opt->passes
                       : env && *env        ? env
                                            : "default<O3>";
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  /* Unrolling the many short constant-trip loops bloats the code: on the
   * attention layer it made kernels ~3x slower and compiles ~4x longer. */
  LLVMPassBuilderOptionsSetLoopUnrolling(po, opt && opt->unroll);
  LLVMErrorRef e = LLVMRunPasses(M, passes, tm, po);
  LLVMDisposePassBuilderOptions(po);
  return llvm_fail(e, "running passes", err);
}

/* Plans and lowers f into a fresh module of C (NULL + message on error). */
static LLVMModuleRef build(const ir_func *f, const cg_options *opt,
                           LLVMContextRef C, const char *triple,
                           LLVMTargetDataRef dl, const char *name,
                           cg_plan *plan, cg_stats *st, ir_error *err) {
  if (ir_verify(f, err)) return NULL;
  if (cg_plan_build(f, !(opt && opt->no_fuse), plan, err)) return NULL;
  LLVMModuleRef M = LLVMModuleCreateWithNameInContext("recall", C);
  LLVMSetTarget(M, triple);
  LLVMSetModuleDataLayout(M, dl);
  int loops = 0;
  if (cg_lower(f, plan, C, M, name, opt && opt->profile,
               !(opt && opt->denormals), &loops, err)) {
    LLVMDisposeModule(M);
    cg_plan_free(plan);
    return NULL;
  }
  if (st) {
    st->n_loops_emitted = loops;
    st->n_materialised = plan->n_mat;
    st->n_fused = plan->n_fused;
    st->n_slots = plan->n_slots;
    st->arena_bytes = (size_t)plan->arena_bytes;
  }
  return M;
}

static void module_leaves(cg_module *m, const ir_func *f, const cg_plan *p) {
  m->n_leaves = p->n_leaves;
  m->n_nodes = f->n_nodes;
  m->n_outs = f->n_outs;
  m->arena = (size_t)p->arena_bytes;
  m->leaf_node = malloc(sizeof *m->leaf_node * ((size_t)p->n_leaves + 1));
  m->leaf_of = malloc(sizeof *m->leaf_of * ((size_t)f->n_nodes + 1));
  m->const_data = calloc((size_t)p->n_leaves + 1, sizeof *m->const_data);
  if (!m->leaf_node || !m->leaf_of || !m->const_data) abort();
  for (int v = 0; v < f->n_nodes; v++) m->leaf_of[v] = -1;
  for (int i = 0; i < p->n_leaves; i++) {
    int v = p->leaf_node[i];
    const ir_node *n = &f->nodes[v];
    m->leaf_node[i] = v;
    m->leaf_of[v] = i;
    if (n->op == IR_OP_CONST && n->data) {
      size_t sz = sizeof(float) * (size_t)ir_numel(&n->type);
      m->const_data[i] = malloc(sz);
      if (!m->const_data[i]) abort();
      memcpy(m->const_data[i], n->data, sz);
    }
  }
}

static void module_free(cg_module *m) {
  for (int i = 0; i < m->n_leaves; i++) free(m->const_data[i]);
  free(m->const_data);
  free(m->leaf_node);
  free(m->leaf_of);
  free(m);
}

/* Machine code for M from tm, as an ELF object in memory (NULL + message
 * on failure). Codegen mutates M. */
static LLVMMemoryBufferRef emit(LLVMTargetMachineRef tm, LLVMModuleRef M,
                                LLVMCodeGenFileType kind, ir_error *err) {
  char *msg = NULL;
  LLVMMemoryBufferRef buf = NULL;
  if (LLVMTargetMachineEmitToMemoryBuffer(tm, M, kind, &msg, &buf)) {
    ir_err(err, "codegen: emitting machine code: %.400s", msg);
    buf = NULL;
  }
  LLVMDisposeMessage(msg);
  return buf;
}

/* Each compile plans, lowers, optimises and emits an object file on its
 * own thread with its own context and TargetMachine; the shared LLJIT
 * only links the object (LLJIT's own compile step shares one
 * TargetMachine and is not safe to drive from several threads). */
cg_module *cg_compile(const ir_func *f, const cg_options *opt, ir_error *err) {
  char name[64];
  double t0 = now_ms();
  LLVMOrcLLJITRef J = jit_get(name, sizeof name, err);
  if (!J) return NULL;
  LLVMTargetMachineRef tm = make_tm(NULL, err); /* ~0.1 ms */
  if (!tm) return NULL;
  cg_module *m = calloc(1, sizeof *m);
  if (!m) abort();
  LLVMContextRef C = LLVMContextCreate();
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  char *triple = LLVMGetTargetMachineTriple(tm);
  cg_plan plan;
  LLVMModuleRef M = build(f, opt, C, triple, dl, name, &plan, &m->st, err);
  LLVMDisposeMessage(triple);
  LLVMDisposeTargetData(dl);
  LLVMMemoryBufferRef obj = NULL;
  double t1 = now_ms(), t2 = t1;
  if (M) {
    module_leaves(m, f, &plan);
    cg_plan_free(&plan);
    t1 = now_ms();
    if (!run_passes(M, opt, tm, err)) {
      t2 = now_ms();
      obj = emit(tm, M, LLVMObjectFile, err);
    }
    LLVMDisposeModule(M);
  }
  LLVMContextDispose(C);
  LLVMDisposeTargetMachine(tm);
  if (!obj) {
    module_free(m);
    return NULL;
  }
  m->rt = LLVMOrcJITDylibCreateResourceTracker(LLVMOrcLLJITGetMainJITDylib(J));
  LLVMOrcExecutorAddress addr = 0, prof = 0;
  char pn[80];
  snprintf(pn, sizeof pn, "%s.prof", name);
  if (llvm_fail(LLVMOrcLLJITAddObjectFileWithRT(J, m->rt, obj), "adding the code", err) ||
      llvm_fail(LLVMOrcLLJITLookup(J, &addr, name), "linking", err) ||
      (opt && opt->profile &&
       llvm_fail(LLVMOrcLLJITLookup(J, &prof, pn), "profile counters", err))) {
    LLVMErrorRef e = LLVMOrcResourceTrackerRemove(m->rt);
    if (e) LLVMConsumeError(e);
    LLVMOrcReleaseResourceTracker(m->rt);
    module_free(m);
    return NULL;
  }
  m->fn = (cg_kernel_fn)(uintptr_t)addr;
  m->prof = (uint64_t *)(uintptr_t)prof;
  m->st.lower_ms = t1 - t0;
  m->st.opt_ms = t2 - t1;
  m->st.jit_ms = now_ms() - t2;
  return m;
}

void cg_free(cg_module *m) {
  if (!m) return;
  ir_error e;
  if (llvm_fail(LLVMOrcResourceTrackerRemove(m->rt), "freeing code", &e))
    fprintf(stderr, "recall: %s\n", e.msg);
  LLVMOrcReleaseResourceTracker(m->rt);
  module_free(m);
}

int cg_run(const cg_module *m, const void *const *leaves, void *const *outs,
           void *arena) {
  enum { SMALL = 64 };
  const void *buf[SMALL];
  const void **lv = m->n_leaves <= SMALL ? buf : malloc(sizeof *lv * (size_t)m->n_leaves);
  if (!lv) abort();
  int rc = 0;
  for (int i = 0; i < m->n_leaves && rc == 0; i++) {
    lv[i] = leaves[i] ? leaves[i] : m->const_data[i];
    if (!lv[i]) rc = -1;
  }
  if (rc == 0) rc = m->fn(lv, outs, arena);
  if (lv != buf) free(lv);
  return rc;
}

cg_kernel_fn cg_kernel(const cg_module *m) { return m->fn; }
size_t cg_arena_size(const cg_module *m) { return m->arena; }
int cg_n_leaves(const cg_module *m) { return m->n_leaves; }
int cg_n_outputs(const cg_module *m) { return m->n_outs; }
const cg_stats *cg_module_stats(const cg_module *m) { return &m->st; }
uint64_t *cg_profile(const cg_module *m) { return m->prof; }

int cg_leaf_node(const cg_module *m, int i) {
  return i >= 0 && i < m->n_leaves ? m->leaf_node[i] : -1;
}

int cg_leaf_index(const cg_module *m, int node) {
  return node >= 0 && node < m->n_nodes ? m->leaf_of[node] : -1;
}

void *cg_arena_new(const cg_module *m) {
  size_t n = (m->arena + 63) / 64 * 64;
  void *p = aligned_alloc(64, n ? n : 64);
  if (!p) abort();
  memset(p, 0, n ? n : 64);
  return p;
}

/* ---- text dumps (no JIT involved) ---- */

typedef enum { DUMP_LOWERED, DUMP_OPT, DUMP_ASM } dump_kind;

static char *dump(const ir_func *f, const cg_options *opt, dump_kind kind,
                  ir_error *err) {
  LLVMTargetMachineRef tm = make_tm(opt ? opt->cpu : NULL, err);
  if (!tm) return NULL;
  LLVMContextRef C = LLVMContextCreate();
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  char *triple = LLVMGetTargetMachineTriple(tm);
  cg_plan plan;
  char *text = NULL;
  LLVMModuleRef M = build(f, opt, C, triple, dl, "recall_kernel", &plan, NULL, err);
  if (M) {
    cg_plan_free(&plan);
    if (kind == DUMP_LOWERED || !run_passes(M, opt, tm, err)) {
      if (kind != DUMP_ASM) {
        char *s = LLVMPrintModuleToString(M);
        text = strdup(s);
        LLVMDisposeMessage(s);
      } else {
        LLVMMemoryBufferRef buf = emit(tm, M, LLVMAssemblyFile, err);
        if (buf) {
          size_t n = LLVMGetBufferSize(buf);
          text = malloc(n + 1);
          if (!text) abort();
          memcpy(text, LLVMGetBufferStart(buf), n);
          text[n] = 0;
          LLVMDisposeMemoryBuffer(buf);
        }
      }
    }
    LLVMDisposeModule(M);
  }
  LLVMDisposeMessage(triple);
  LLVMDisposeTargetData(dl);
  LLVMContextDispose(C);
  LLVMDisposeTargetMachine(tm);
  return text;
}

char *cg_llvm_ir(const ir_func *f, const cg_options *opt, cg_stage stage,
                 ir_error *err) {
  return dump(f, opt, stage == CG_STAGE_LOWERED ? DUMP_LOWERED : DUMP_OPT, err);
}

char *cg_asm(const ir_func *f, const cg_options *opt, ir_error *err) {
  return dump(f, opt, DUMP_ASM, err);
}

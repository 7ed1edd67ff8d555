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
#include <unistd.h>

struct cg_module {
  cg_kernel_fn fn;
  cg_kernel_fn prep; /* opt->hoist and something hoisted: name.prep */
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

/* Whether LLVM's list of the host's features has "+name". */
static bool has_feature(const char *feat, const char *name) {
  size_t n = strlen(name);
  for (const char *f = feat; (f = strstr(f, name)); f += n)
    if (f > feat && f[-1] == '+' && (f[n] == ',' || !f[n])) return true;
  return false;
}

/* The host's x86 level (LLVM's view of its features). AVX-512 here is
 * F with VL and DQ, as on every such server CPU since Skylake-SP (the
 * Xeon Phi had F alone, with slow 512-bit shuffles). */
static cg_isa host_isa_level;
static void probe_host(void) {
  char *triple = LLVMGetDefaultTargetTriple(), *feat = LLVMGetHostCPUFeatures();
  if (!strncmp(triple, "x86_64", 6) && has_feature(feat, "avx2"))
    host_isa_level = has_feature(feat, "avx512f") && has_feature(feat, "avx512vl") &&
                             has_feature(feat, "avx512dq")
                         ? CG_ISA_AVX512 : CG_ISA_AVX2;
  LLVMDisposeMessage(feat);
  LLVMDisposeMessage(triple);
}
static cg_isa host_isa(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, probe_host);
  return host_isa_level;
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

/* The default pipeline: O3's function passes that matter for this code,
 * in one round, without O3's inliner rounds and interprocedural passes (the
 * node functions are noinline by design) or its loop unswitching and
 * idiom passes, and without indvars (the loops are emitted in canonical
 * form already). Lowered code needs: SROA (accumulator allocas),
 * CSE/instcombine on the index arithmetic, LICM and rotation (so loops
 * vectorise), GVN/DSE for repeated loads and stores, the loop and SLP
 * vectorisers, cleanup after them. Measured against "default<O3>"
 * (mamba d 8 training kernel, callgrind): 23% fewer instructions to
 * compile; training steps as fast within the noise of a shared machine
 * (mamba, hybrid, transformer at d 8 and 64; the same shares of cycles
 * per node in `recall bench --profile` for mamba d 64). */
#define CG_PIPELINE                                                          \
  "function(sroa,early-cse<memssa>,simplifycfg,"                             \
  "instcombine<max-iterations=1;no-verify-fixpoint>,"                        \
  "loop-mssa(loop-instsimplify,licm,loop-rotate,licm<allowspeculation>),"    \
  "simplifycfg,instcombine<max-iterations=1;no-verify-fixpoint>,"            \
  "gvn,dse,loop-vectorize,infer-alignment,"                                  \
  "instcombine<max-iterations=1;no-verify-fixpoint>,simplifycfg,"            \
  "slp-vectorizer,vector-combine,"                                           \
  "instcombine<max-iterations=1;no-verify-fixpoint>,"                        \
  "loop-mssa(licm<allowspeculation>),simplifycfg)"

static int run_passes(LLVMModuleRef M, const cg_options *opt,
                      LLVMTargetMachineRef tm, ir_error *err) {
  /* RECALL_PASSES overrides the default pipeline: for studying it */
  const char *env = getenv("RECALL_PASSES");
  const char *passes = opt && opt->passes ? opt->passes
                       : env && *env        ? env
                                            : CG_PIPELINE;
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  /* Unrolling the many short constant-trip loops bloats the code: on the
   * attention layer it made kernels ~3x slower and compiles ~4x longer. */
  LLVMPassBuilderOptionsSetLoopUnrolling(po, opt && opt->unroll);
  LLVMErrorRef e = LLVMRunPasses(M, passes, tm, po);
  LLVMDisposePassBuilderOptions(po);
  return llvm_fail(e, "running passes", err);
}

/* Plans and lowers f into n fresh modules, one per context units[i].C
 * (sets units[i].M; -1 + message on error, the modules disposed). */
static int build(const ir_func *f, const cg_options *opt, int n,
                 cg_unit *units, const char *triple, LLVMTargetDataRef dl,
                 const char *name, cg_plan *plan, cg_stats *st, ir_error *err) {
  if (ir_verify(f, err)) return -1;
  if (cg_plan_build(f, opt, plan, err)) return -1;
  for (int u = 0; u < n; u++) {
    units[u].M = LLVMModuleCreateWithNameInContext("recall", units[u].C);
    LLVMSetTarget(units[u].M, triple);
    LLVMSetModuleDataLayout(units[u].M, dl);
  }
  int loops = 0, fns = 0;
  /* x86 intrinsics only for the host: a named cpu's features are not
   * known here (its code takes the generic forms) */
  cg_isa isa = opt && opt->cpu ? CG_ISA_GENERIC : host_isa();
  if (cg_lower(f, plan, n, units, name, opt && opt->profile,
               !(opt && opt->denormals), isa, &loops, &fns, err)) {
    for (int u = 0; u < n; u++) LLVMDisposeModule(units[u].M);
    cg_plan_free(plan);
    return -1;
  }
  if (st) {
    st->n_loops_emitted = loops;
    st->n_functions = fns;
    st->n_materialised = plan->n_mat;
    st->n_fused = plan->n_fused;
    st->n_placed = plan->n_placed;
    st->n_upto = plan->n_upto;
    st->n_hoisted = plan->n_hoisted;
    st->n_siblings = plan->n_siblings;
    st->n_folded = plan->n_folded;
    st->n_slots = plan->n_slots;
    st->arena_bytes = (size_t)plan->arena_bytes;
    st->n_units = n;
  }
  return 0;
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

/* How many units (modules compiled on threads of their own) f's kernel
 * is split into: opt->compile_threads, else $RECALL_COMPILE_THREADS, else
 * one per CPU; at most CG_MAX_UNITS and one per CG_FNS_PER_UNIT
 * non-leaf nodes (a unit costs a context, a TargetMachine, a thread).
 * Splitting adds no compile work (callgrind: the same instruction count
 * for 1 and 2 units) and on an idle 2-core machine about halves the
 * passes' and code generation's wall time. */
enum { CG_MAX_UNITS = 4, CG_FNS_PER_UNIT = 8 };
static int n_units_for(const ir_func *f, const cg_options *opt) {
  int n = opt && opt->compile_threads > 0 ? opt->compile_threads : 0;
  const char *env = getenv("RECALL_COMPILE_THREADS");
  if (!n && env && *env) n = atoi(env);
  if (n <= 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n = cpus < 1 ? 1 : cpus > CG_MAX_UNITS ? CG_MAX_UNITS : (int)cpus;
  }
  int work = 0;
  for (int v = 0; v < f->n_nodes; v++) work += !ir_op_is_leaf(f->nodes[v].op);
  int cap = work / CG_FNS_PER_UNIT;
  if (n > cap) n = cap;
  if (n > CG_MAX_UNITS) n = CG_MAX_UNITS;
  return n < 1 ? 1 : n;
}

/* One unit's passes and machine code, on a thread of its own with its
 * own TargetMachine (they are not shareable across threads). */
typedef struct {
  LLVMModuleRef M;
  const cg_options *opt;
  LLVMMemoryBufferRef obj;
  double opt_ms; /* when the passes ended, relative to the start */
  ir_error err;
  int rc;
} unit_job;

static void *compile_unit(void *arg) {
  unit_job *j = arg;
  double t0 = now_ms();
  LLVMTargetMachineRef tm = make_tm(NULL, &j->err);
  j->rc = -1;
  if (tm && !run_passes(j->M, j->opt, tm, &j->err)) {
    j->opt_ms = now_ms() - t0;
    j->obj = emit(tm, j->M, LLVMObjectFile, &j->err);
    j->rc = j->obj ? 0 : -1;
  }
  if (tm) LLVMDisposeTargetMachine(tm);
  return NULL;
}

/* Each compile plans and lowers into one or more units (modules with
 * their own contexts), then optimises and emits each unit's object file
 * on a thread of its own; the shared LLJIT only links the objects
 * (LLJIT's own compile step shares one TargetMachine and is not safe to
 * drive from several threads). */
cg_module *cg_compile(const ir_func *f, const cg_options *opt, ir_error *err) {
  char name[64];
  double t0 = now_ms();
  LLVMOrcLLJITRef J = jit_get(name, sizeof name, err);
  if (!J) return NULL;
  LLVMTargetMachineRef tm = make_tm(NULL, err); /* ~0.1 ms */
  if (!tm) return NULL;
  cg_module *m = calloc(1, sizeof *m);
  if (!m) abort();
  int n = n_units_for(f, opt);
  cg_unit units[CG_MAX_UNITS];
  unit_job jobs[CG_MAX_UNITS];
  pthread_t tid[CG_MAX_UNITS];
  bool started[CG_MAX_UNITS] = {false};
  memset(jobs, 0, sizeof jobs);
  for (int u = 0; u < n; u++) units[u].C = LLVMContextCreate();
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  char *triple = LLVMGetTargetMachineTriple(tm);
  cg_plan plan;
  int rc = build(f, opt, n, units, triple, dl, name, &plan, &m->st, err);
  LLVMDisposeMessage(triple);
  LLVMDisposeTargetData(dl);
  LLVMDisposeTargetMachine(tm);
  double t1 = now_ms(), t2 = t1;
  if (!rc) {
    module_leaves(m, f, &plan);
    cg_plan_free(&plan);
    t1 = now_ms();
    for (int u = 0; u < n; u++) jobs[u] = (unit_job){.M = units[u].M, .opt = opt};
    for (int u = 1; u < n; u++)
      started[u] = !pthread_create(&tid[u], NULL, compile_unit, &jobs[u]);
    compile_unit(&jobs[0]);
    for (int u = 1; u < n; u++) { /* a thread that did not start runs here */
      if (started[u]) pthread_join(tid[u], NULL);
      else compile_unit(&jobs[u]);
    }
    double opt_ms = 0;
    for (int u = 0; u < n; u++) {
      if (jobs[u].rc && !rc) {
        *err = jobs[u].err;
        rc = -1;
      }
      if (jobs[u].opt_ms > opt_ms) opt_ms = jobs[u].opt_ms;
      LLVMDisposeModule(units[u].M);
    }
    t2 = t1 + opt_ms;
  }
  for (int u = 0; u < n; u++) LLVMContextDispose(units[u].C);
  if (rc) {
    for (int u = 0; u < n; u++)
      if (jobs[u].obj) LLVMDisposeMemoryBuffer(jobs[u].obj);
    module_free(m);
    return NULL;
  }
  m->rt = LLVMOrcJITDylibCreateResourceTracker(LLVMOrcLLJITGetMainJITDylib(J));
  LLVMOrcExecutorAddress addr = 0, prof = 0, prep = 0;
  char pn[80], pp[80];
  snprintf(pn, sizeof pn, "%s.prof", name);
  snprintf(pp, sizeof pp, "%s.prep", name);
  LLVMErrorRef e = NULL;
  for (int u = 0; u < n; u++) /* consumes every buffer, even after an error */
    if (!e) e = LLVMOrcLLJITAddObjectFileWithRT(J, m->rt, jobs[u].obj);
    else LLVMDisposeMemoryBuffer(jobs[u].obj);
  if (llvm_fail(e, "adding the code", err) ||
      llvm_fail(LLVMOrcLLJITLookup(J, &addr, name), "linking", err) ||
      (opt && opt->profile &&
       llvm_fail(LLVMOrcLLJITLookup(J, &prof, pn), "profile counters", err)) ||
      (m->st.n_hoisted > 0 &&
       llvm_fail(LLVMOrcLLJITLookup(J, &prep, pp), "linking the prep entry", err))) {
    LLVMErrorRef e2 = LLVMOrcResourceTrackerRemove(m->rt);
    if (e2) LLVMConsumeError(e2);
    LLVMOrcReleaseResourceTracker(m->rt);
    module_free(m);
    return NULL;
  }
  m->fn = (cg_kernel_fn)(uintptr_t)addr;
  m->prep = (cg_kernel_fn)(uintptr_t)prep;
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

/* fn with the leaves, NULL consts replaced by the module's copies. */
static int call(const cg_module *m, cg_kernel_fn fn, const void *const *leaves,
                void *const *outs, void *arena) {
  enum { SMALL = 64 };
  const void *buf[SMALL];
  const void **lv = m->n_leaves <= SMALL ? buf : malloc(sizeof *lv * (size_t)m->n_leaves);
  if (!lv) abort();
  int rc = 0;
  for (int i = 0; i < m->n_leaves && rc == 0; i++) {
    lv[i] = leaves[i] ? leaves[i] : m->const_data[i];
    if (!lv[i]) rc = -1;
  }
  if (rc == 0) rc = fn(lv, outs, arena);
  if (lv != buf) free(lv);
  return rc;
}

int cg_run(const cg_module *m, const void *const *leaves, void *const *outs,
           void *arena) {
  return call(m, m->fn, leaves, outs, arena);
}

int cg_prepare(const cg_module *m, const void *const *leaves, void *arena) {
  return m->prep ? call(m, m->prep, leaves, NULL, arena) : 0;
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
  cg_unit unit = {.C = LLVMContextCreate()}; /* one module: one text */
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  char *triple = LLVMGetTargetMachineTriple(tm);
  cg_plan plan;
  char *text = NULL;
  if (!build(f, opt, 1, &unit, triple, dl, "recall_kernel", &plan, NULL, err)) {
    LLVMModuleRef M = unit.M;
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
  LLVMContextDispose(unit.C);
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

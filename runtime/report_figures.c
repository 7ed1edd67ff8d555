/* report_figures.c — figures as gnuplot data blocks (.dat) and scripts
 * (.gp) that render PNG and SVG, and the runs of gnuplot. The rt_gp_
 * functions are the part `recall inspect` shares (report_int.h). */
#include "report_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---------------------------------------------------------------------
 * gnuplot: scripts that render PNG and SVG, and the runs of gnuplot
 * (shared with `recall inspect`)
 * --------------------------------------------------------------------- */

char *rt_gp_find(const char *prog) {
  if (strchr(prog, '/')) return access(prog, X_OK) == 0 ? rp_xstrdup(prog) : NULL;
  const char *path = getenv("PATH");
  while (path && *path) {
    size_t n = strcspn(path, ":");
    rt_buf b = {0};
    rt_buf_printf(&b, "%.*s/%s", (int)n, n ? path : ".", prog);
    struct stat st;
    if (stat(b.s, &st) == 0 && S_ISREG(st.st_mode) && access(b.s, X_OK) == 0) return b.s;
    rt_buf_free(&b);
    path += n + (path[n] == ':');
  }
  return NULL;
}

void rt_gp_str(rt_buf *b, const char *s) {
  rt_buf_printf(b, "'");
  for (; *s; s++) rt_buf_printf(b, *s == '\'' ? "''" : "%c", *s);
  rt_buf_printf(b, "'");
}

void rt_gp_begin(rt_buf *b, const char *by, const char *name,
                 const char *title, int w, int h) {
  rt_buf_printf(b, "# %s\n# Written by %s. Re-render from this directory with\n"
                "#   gnuplot %s.gp\n# which writes %s.png and %s.svg from %s.dat.\n\n",
                title, by, name, name, name, name);
  /* png and svg may be set with -e: recall renders to temporary names
   * and renames them, so a figure is complete or absent. */
  rt_buf_printf(b, "dat = '%s.dat'\n"
                "if (!exists('png')) png = '%s.png'\n"
                "if (!exists('svg')) svg = '%s.svg'\n"
                "do for [t = 1:2] {\n  if (t == 1) {\n"
                "    set terminal pngcairo size %d,%d noenhanced font 'Sans,10'\n"
                "    set output png\n  } else {\n"
                "    set terminal svg size %d,%d noenhanced font 'Sans,10' "
                "background '#ffffff'\n    set output svg\n  }\n",
                name, name, name, w, h, w, h);
}

void rt_gp_end(rt_buf *b) { rt_buf_printf(b, "}\nset output\n"); }

int rt_gp_write(const char *dir, const char *name, const rt_buf *dat,
                const rt_buf *gp, ir_error *err) {
  char file[512];
  snprintf(file, sizeof file, "%s.dat", name);
  char *dat_path = rp_join(dir, file);
  snprintf(file, sizeof file, "%s.gp", name);
  char *gp_path = rp_join(dir, file);
  int rc = rt_write_atomic(dat_path, dat->s ? dat->s : "", dat->len, err);
  if (rc == 0) rc = rt_write_atomic(gp_path, gp->s ? gp->s : "", gp->len, err);
  free(dat_path), free(gp_path);
  return rc;
}

/* The temporary names a figure renders to (NAME.png.tmp.PID.N, the
 * pattern --resume cleans up) and the -e that sets them. */
static void temp_names(const char *name, int k, char png[600], char svg[600],
                       char set[1400]) {
  snprintf(png, 600, "%s.png.tmp.%ld.%d", name, (long)getpid(), k);
  snprintf(svg, 600, "%s.svg.tmp.%ld.%d", name, (long)getpid(), k);
  snprintf(set, 1400, "png = '%s'; svg = '%s'", png, svg);
}

/* Runs `gnuplot -e SET NAME.gp` in dir with stderr to NAME.log, in a
 * process group of its own so that a Ctrl-C meant for recall does not
 * kill it halfway through a file. Everything the child needs is built
 * before fork. */
static pid_t spawn_gnuplot(const char *prog, const char *dir, const char *set,
                           const char *gp, const char *log) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  setpgid(0, 0);
  int null = open("/dev/null", O_RDWR);
  if (chdir(dir) < 0) _exit(126);
  int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (null >= 0) dup2(null, 0), dup2(null, 1);
  if (fd >= 0) dup2(fd, 2);
  execl(prog, prog, "-e", set, gp, (char *)NULL);
  _exit(127);
}

/* Renames the temporary PNG and SVG of a rendered figure into place, or
 * removes them. Returns 0, or -1 when a rename failed. */
static int settle(const char *dir, const char *name, int k, bool ok) {
  char png[600], svg[600], set[1400], fin[600];
  temp_names(name, k, png, svg, set);
  int rc = 0;
  const char *tmp[2] = {png, svg}, *ext[2] = {"png", "svg"};
  for (int i = 0; i < 2; i++) {
    char *from = rp_join(dir, tmp[i]);
    snprintf(fin, sizeof fin, "%s.%s", name, ext[i]);
    char *to = rp_join(dir, fin);
    if (!ok || rename(from, to) < 0) {
      if (ok) rc = -1;
      unlink(from);
    }
    free(from), free(to);
  }
  return rc;
}

int rt_gp_render(const char *prog, const char *dir, const char *const *names,
                 int n, int *rendered, ir_error *err) {
  enum { PAR = 8 };
  pid_t pid[PAR];
  int which[PAR], running = 0, next = 0, rc = 0;
  while (next < n || running > 0) {
    if (next < n && running < PAR) {
      char gp[600], log[600], png[600], svg[600], set[1400];
      snprintf(gp, sizeof gp, "%s.gp", names[next]);
      snprintf(log, sizeof log, "%s.log", names[next]);
      temp_names(names[next], next, png, svg, set);
      pid_t p = spawn_gnuplot(prog, dir, set, gp, log);
      if (p < 0) {
        ir_err(err, "cannot start %s: %s", prog, strerror(errno));
        rc = -1;
        next = n;
        continue;
      }
      pid[running] = p, which[running++] = next++;
      continue;
    }
    /* Oldest first, by pid: never reap a child of the caller's. */
    int st;
    pid_t p;
    while ((p = waitpid(pid[0], &st, 0)) < 0 && errno == EINTR) {}
    if (p < 0) st = 127 << 8;
    const char *name = names[which[0]];
    int which_k = which[0];
    running--;
    memmove(pid, pid + 1, sizeof *pid * (size_t)running);
    memmove(which, which + 1, sizeof *which * (size_t)running);
    char file[600];
    snprintf(file, sizeof file, "%s.log", name);
    char *log = rp_join(dir, file);
    bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (settle(dir, name, which_k, ok) < 0 && rc == 0) {
      ir_err(err, "cannot rename the rendered %s/%s: %s", dir, name, strerror(errno));
      rc = -1;
    } else if (ok) {
      unlink(log);
      (*rendered)++;
    } else if (rc == 0) {
      bool missing;
      ir_error e2;
      char *text = rp_slurp(log, &missing, &e2);
      char *line = text ? text : "", *at = strstr(line, "\" line ");
      if (at) { /* gnuplot's message: "NAME.gp" line 12: ... */
        while (at > line && at[-1] != '\n') at--;
        line = at;
      }
      while (*line == '\n' || *line == ' ') line++;
      ir_err(err, "gnuplot failed on %s/%s.gp (see %s): %.*s", dir, name, log,
             (int)strcspn(line, "\n"), line);
      free(text);
      rc = -1;
    }
    free(log);
  }
  return rc;
}

/* ---------------------------------------------------------------------
 * Figures: data blocks (.dat), a gnuplot script (.gp) rendering PNG and
 * SVG, and the run of gnuplot
 * --------------------------------------------------------------------- */

figure *rp_fig_new(figures *fs, const char *x_col, char *name, char *title,
                   char *caption) {
  figure *f = rp_xrealloc(NULL, sizeof *f);
  *f = (figure){.name = name, .title = title, .caption = caption, .rows = 1,
                .cols = 1, .x_col = x_col};
  rt_buf_printf(&f->dat, "# %s\n# Written by recall report. Blocks (gnuplot `index`) "
                "are separated by two blank lines;\n# columns: %s mean min max seeds "
                "(mean, min and max over seeds).\n", title, x_col);
  PUSH(fs->f, fs->n, fs->cap, f);
  return f;
}

panel *rp_fig_panel(figure *f, char *title, const char *xlabel,
                    const char *ylabel) {
  panel p = {.title = title, .xlabel = rp_xstrdup(xlabel), .ylabel = rp_xstrdup(ylabel)};
  PUSH(f->p, f->n_p, f->cap_p, p);
  return &f->p[f->n_p - 1];
}

void rp_fig_hole(figure *f) {
  panel p = {.empty = true};
  PUSH(f->p, f->n_p, f->cap_p, p);
}

/* Adds the points as a data block and a series drawing it. */
void rp_fig_series(figure *f, panel *p, const char *title, const char *color,
                   bool band, const agg *a, int n) {
  rt_buf_printf(&f->dat, "%s# block %d: %s", f->n_blocks ? "\n\n" : "\n", f->n_blocks,
                title);
  if (p->title) rt_buf_printf(&f->dat, " [%s]", p->title); /* the panel */
  rt_buf_printf(&f->dat, "\n# %s mean min max seeds\n", f->x_col);
  for (int i = 0; i < n; i++)
    rt_buf_printf(&f->dat, "%ld %.6f %.6f %.6f %d\n", a[i].x, a[i].mean, a[i].lo,
                  a[i].hi, a[i].k);
  series s = {rp_xstrdup(title), f->n_blocks++, color, band};
  PUSH(p->s, p->n_s, p->cap_s, s);
}

static void fig_free(figure *f) {
  for (int i = 0; i < f->n_p; i++) {
    panel *p = &f->p[i];
    for (int j = 0; j < p->n_s; j++) free(p->s[j].title);
    free(p->s), free(p->title), free(p->xlabel), free(p->ylabel);
  }
  free(f->p), free(f->name), free(f->title), free(f->caption);
  rt_buf_free(&f->dat);
  free(f);
}

void rp_figures_free(figures *fs) {
  for (int i = 0; i < fs->n; i++) fig_free(fs->f[i]);
  free(fs->f);
  *fs = (figures){0};
}

static void gp_panel(rt_buf *b, const panel *p, const char *title, bool multi) {
  if (p->empty) {
    rt_buf_printf(b, "  set multiplot next\n");
    return;
  }
  rt_buf_printf(b, "  set title ");
  rt_gp_str(b, title);
  rt_buf_printf(b, " offset 0,%s\n  set xlabel ", p->vline > 0 ? "0.6" : "0");
  rt_gp_str(b, p->xlabel);
  rt_buf_printf(b, "\n  set ylabel ");
  rt_gp_str(b, p->ylabel);
  if (p->xhi > p->xlo) rt_buf_printf(b, "\n  set xrange [%ld:%ld]\n", p->xlo, p->xhi);
  else rt_buf_printf(b, "\n  set xrange [*:*]\n  set autoscale xfix\n");
  /* Panels keep their key in a row above accuracy 1. */
  rt_buf_printf(b, "  set yrange [0:%s]\n  set ytics 0, 0.2, 1\n", multi ? "1.22" : "1.05");
  /* The training length: a dotted line, labelled on the top axis. */
  rt_buf_printf(b, "  unset arrow\n");
  if (p->vline > 0)
    rt_buf_printf(b, "  set arrow from %d, graph 0 to %d, graph 1 nohead dt 3 lw 1.5 "
                  "lc rgb '#555555'\n  set link x2\n  set x2tics ('L = %d' %d) nomirror "
                  "tc rgb '#555555'\n", p->vline, p->vline, p->vline, p->vline);
  else
    rt_buf_printf(b, "  unset x2tics\n");
  if (!multi)
    rt_buf_printf(b, "  set key outside right top Left reverse\n");
  else if (p->n_s > 1)
    rt_buf_printf(b, "  set key top left horizontal maxrows 1 Left reverse font ',9' samplen 2\n");
  else
    rt_buf_printf(b, "  unset key\n");
  rt_buf_printf(b, "  plot");
  const char *sep = " ";
  for (int i = 0; i < p->n_s; i++)
    if (p->s[i].band) {
      rt_buf_printf(b, "%sdat index %d using 1:3:4 with filledcurves fc rgb '%s' "
                    "fs transparent solid 0.2 noborder notitle", sep, p->s[i].block,
                    p->s[i].color);
      sep = ", \\\n       ";
    }
  for (int i = 0; i < p->n_s; i++) {
    rt_buf_printf(b, "%sdat index %d using 1:2 with lines lw 2 lc rgb '%s' title ",
                  sep, p->s[i].block, p->s[i].color);
    rt_gp_str(b, p->s[i].title);
    sep = ", \\\n       ";
  }
  if (p->chance > 0)
    rt_buf_printf(b, "%s%.10g with lines dt 2 lw 1.5 lc rgb '#000000' title "
                  "'chance 1/K'", sep, p->chance);
  if (p->target > 0)
    rt_buf_printf(b, "%s%.10g with lines dt 3 lw 1.5 lc rgb '#888888' title "
                  "'accuracy %.2f'", sep, p->target, p->target);
  rt_buf_printf(b, "\n");
}

static void gp_script(rt_buf *b, const figure *f) {
  bool multi = f->n_p > 1;
  int w = multi ? 440 * f->cols : 960, h = multi ? 350 * f->rows + 90 : 600;
  rt_gp_begin(b, "recall report", f->name, f->title, w, h);
  rt_buf_printf(b, "  set grid lc rgb '#dddddd'\n  set border lc rgb '#444444'\n"
                "  set xtics nomirror\n");
  if (multi) { /* fixed margins (in pixels) leave room for titles and labels */
    rt_buf_printf(b, "  set multiplot layout %d,%d title ", f->rows, f->cols);
    rt_gp_str(b, f->title);
    rt_buf_printf(b, " margins %.4f, %.4f, %.4f, %.4f spacing %.4f, %.4f\n", 70.0 / w,
                  1 - 20.0 / w, 50.0 / h, 1 - 100.0 / h, 85.0 / w, 125.0 / h);
  }
  for (int i = 0; i < f->n_p; i++)
    gp_panel(b, &f->p[i], multi ? f->p[i].title : f->title, multi);
  if (multi) rt_buf_printf(b, "  unset multiplot\n");
  rt_gp_end(b);
}

int rp_fig_write(const char *figdir, const figure *f, ir_error *err) {
  rt_buf gp = {0};
  gp_script(&gp, f);
  int rc = rt_gp_write(figdir, f->name, &f->dat, &gp, err);
  rt_buf_free(&gp);
  return rc;
}

int rp_render(const char *prog, const char *figdir, const figures *fs,
              int *rendered, ir_error *err) {
  const char **names = rp_xrealloc(NULL, sizeof *names * (size_t)(fs->n ? fs->n : 1));
  for (int i = 0; i < fs->n; i++) names[i] = fs->f[i]->name;
  int rc = rt_gp_render(prog, figdir, names, fs->n, rendered, err);
  free(names);
  return rc;
}

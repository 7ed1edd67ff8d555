/* targets.h — the bodies of the fuzz targets (targets.c), shared by the
 * libFuzzer drivers (fuzz_*.c, `make fuzz`) and the regression suite
 * tests/test_corpus.c, which replays tests/corpus/<target>/ through them.
 * Each takes any bytes and returns 0; a bug shows as a crash or a
 * sanitizer report, never as a return value. */
#ifndef RECALL_FUZZ_TARGETS_H
#define RECALL_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

int fz_safetensors(const uint8_t *data, size_t n); /* rt_st_read_mem */
int fz_ir_parse(const uint8_t *data, size_t n);    /* parse, verify, grad, opt, interp */
int fz_lua_graph(const uint8_t *data, size_t n);   /* a model spec, sandboxed */

#endif

/* fuzz_lua_graph.c — libFuzzer driver for fz_lua_graph (targets.c); `make fuzz`. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) { return fz_lua_graph(data, n); }

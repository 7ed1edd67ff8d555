/* fuzz_ir_parse.c — libFuzzer driver for fz_ir_parse (targets.c); `make fuzz`. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) { return fz_ir_parse(data, n); }

/* fuzz_safetensors.c — libFuzzer driver for fz_safetensors (targets.c); `make fuzz`. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) { return fz_safetensors(data, n); }

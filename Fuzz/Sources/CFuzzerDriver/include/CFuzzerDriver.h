// libFuzzer's driver entry point (compiler-rt, present when linking with -sanitize=fuzzer).
// The fuzz targets call it from their own main so SwiftPM can link them as executables.
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

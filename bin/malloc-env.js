// glibc's malloc serves a freed large block's size from its heap from then on (its mmap threshold
// rises with every large free, up to 32 MiB), so the stage-sized buffers a model load frees stay in
// the process: a Wan2.1-1.3B-shaped run peaked at 1.33x its fp32 weights, 1.06x with the threshold
// fixed at 8 MiB (npm run bench:runtime). glibc reads it when a process starts, so the `mixcache`
// command (bin/mixcache.js) and the bench's child processes start with it set.
export const MALLOC_ENV = { MALLOC_MMAP_THRESHOLD_: String(8 << 20) };

/**
 * How CUDA, Vulkan, HIP, Metal and ggml say "out of memory" (as printed by ggml backends
 * inside sd-cli, on stdout or stderr, with or without a log tag). Recognising them lets
 * the caller tell "the GPU was full" (the LLM did not leave, the image is too big) from
 * any other crash.
 */
export const outOfMemoryPatterns: readonly RegExp[] = [
  /cudaMalloc failed/i,
  /hipMalloc failed/i,
  /\bout of memory\b/i,
  /ErrorOutOfDeviceMemory|ErrorOutOfHostMemory/,
  /failed to allocate \S+ buffer/i, // ggml_gallocr_reserve_n: failed to allocate CUDA0 buffer of size N
  /failed to allocate (the )?compute buffers?/i,
  /unable to allocate \S+ buffer/i,
  /\balloc\w*\b.*\bbuffer\b.*\bfailed\b/i, // sd.cpp: "... alloc params backend buffer failed"
  /memory allocation of \d+ bytes failed/i,
  /Device memory allocation of size \d+ failed/i, // ggml_vulkan
  /std::bad_alloc/,
];

export function isOutOfMemoryLine(line: string): boolean {
  return outOfMemoryPatterns.some((p) => p.test(line));
}

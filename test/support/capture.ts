/** Run fn with the CLI's stdout/stderr text captured (shared by CLI-level tests). Binary writes,
 * e.g. the test runner's own serialized events, pass through untouched. */
export async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  const o = process.stdout.write.bind(process.stdout), e = process.stderr.write.bind(process.stderr);
  let so = "", se = "";
  process.stdout.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === "string" ? ((so += s), true) : o(s, ...rest))) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === "string" ? ((se += s), true) : e(s, ...rest))) as typeof process.stderr.write;
  try {
    return { code: await fn(), out: so, err: se };
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
}

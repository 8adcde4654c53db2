/**
 * Whether a process with this pid exists on this host: signal 0 delivers nothing, it only asks.
 * EPERM means it exists but belongs to someone else (alive); ESRCH, or a pid process.kill refuses,
 * means no such process.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Error classes with stable codes and fix-it messages. Every user-facing failure in MixCache is a
 * MixCacheError: `code` is stable (tests and scripts match on it), `message` names the problem and
 * `fix` says what to do about it.
 */
export type ErrorCode =
  | "USAGE" // bad command line or API options
  | "CONFIG" // invalid model or strategy config
  | "WEIGHTS" // unreadable or inconsistent weight files
  | "MODEL_NOT_FOUND"
  | "VOCAB" // prompt word outside the model's vocabulary
  | "IO"
  | "MEMORY" // the run would not fit in this machine's memory (estimated before it starts)
  | "RUNTIME"; // onnxruntime or numerical failure

export class MixCacheError extends Error {
  readonly code: ErrorCode;
  readonly fix: string | undefined;
  constructor(code: ErrorCode, message: string, fix?: string) {
    super(fix ? `${message}\n  fix: ${fix}` : message);
    this.name = "MixCacheError";
    this.code = code;
    this.fix = fix;
  }
}

export class UsageError extends MixCacheError {
  constructor(message: string, fix?: string) {
    super("USAGE", message, fix);
    this.name = "UsageError";
  }
}

export class ConfigError extends MixCacheError {
  constructor(message: string, fix?: string) {
    super("CONFIG", message, fix);
    this.name = "ConfigError";
  }
}

export class WeightsError extends MixCacheError {
  readonly file: string;
  readonly key: string | undefined;
  constructor(file: string, key: string | undefined, message: string, fix?: string) {
    super("WEIGHTS", `${file}${key ? ` [${key}]` : ""}: ${message}`, fix);
    this.name = "WeightsError";
    this.file = file;
    this.key = key;
  }
}

/** Suggest the closest valid names for a typo (used in fix-it messages). */
export function closest(word: string, valid: readonly string[], n = 3): string[] {
  const dist = (a: string, b: string): number => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++)
      for (let j = 1; j <= b.length; j++)
        d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    return d[a.length][b.length];
  };
  return [...valid].sort((a, b) => dist(word, a) - dist(word, b)).slice(0, n);
}

/**
 * Word-level tokenizer of the reference model (tokenizer/tokenizer.json, written by
 * tools/export.py). Id 0 is padding; prompts are lower-cased, punctuation is dropped and every word
 * must be in the vocabulary: an unknown word is an error that lists the vocabulary, never a silent
 * wrong video.
 */
import { readFileSync } from "node:fs";
import { MixCacheError, closest } from "../errors.ts";

export interface TokenizerFile {
  type: "word";
  tokens: string[];
  max_tokens: number;
}

export class WordTokenizer {
  private index: Map<string, number>;
  constructor(readonly tokens: readonly string[], readonly maxTokens: number) {
    this.index = new Map(tokens.map((t, i) => [t, i]));
  }

  static fromFile(path: string): WordTokenizer {
    let raw: TokenizerFile;
    try {
      raw = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      throw new MixCacheError("CONFIG", `cannot read tokenizer ${path}: ${(e as Error).message}`, "re-export the model with tools/export.py");
    }
    if (raw.type !== "word" || !Array.isArray(raw.tokens) || !Number.isInteger(raw.max_tokens))
      throw new MixCacheError("CONFIG", `${path}: expected {"type": "word", "tokens": [...], "max_tokens": N}`);
    return new WordTokenizer(raw.tokens, raw.max_tokens);
  }

  /** The words a prompt may use (everything but padding). */
  get vocabulary(): string[] {
    return this.tokens.slice(1) as string[];
  }

  words(prompt: string): string[] {
    return prompt.toLowerCase().replace(/[.,;:!?"']/g, " ").split(/\s+/).filter(Boolean);
  }

  /** Ids padded with 0 to maxTokens. The empty prompt is all padding (the CFG negative). */
  encode(prompt: string): Int32Array {
    const words = this.words(prompt);
    if (words.length > this.maxTokens)
      throw new MixCacheError("VOCAB", `prompt has ${words.length} words; this model reads at most ${this.maxTokens}`, "shorten the prompt");
    const ids = new Int32Array(this.maxTokens);
    const unknown = words.filter((w) => !this.index.has(w) || this.index.get(w) === 0);
    if (unknown.length) {
      const hint = unknown.map((u) => `"${u}" (closest: ${closest(u, this.vocabulary, 2).join(", ")})`).join("; ");
      throw new MixCacheError("VOCAB", `words outside this model's vocabulary: ${hint}`, `use only these words: ${this.vocabulary.join(" ")}`);
    }
    words.forEach((w, i) => (ids[i] = this.index.get(w)!));
    return ids;
  }
}

/**
 * Hugging Face `tokenizer.json` tokenizers (the umT5 SentencePiece-Unigram tokenizer of Wan2.1) and
 * WanPipeline's prompt handling (diffusers pipelines/wan/pipeline_wan.py `_get_t5_prompt_embeds`):
 *
 *   prompt_clean(text)            html-unescape twice, strip, collapse whitespace runs to " ", strip
 *   tokenizer(prompt, padding="max_length", max_length=512, truncation=True, add_special_tokens=True)
 *   seq_len = attention_mask.sum()
 *
 * Tokenization itself is done by @huggingface/tokenizers (tokenizers.js, pure JS, the tokenizer of
 * transformers.js): normalizer, pre-tokenizer, Unigram/BPE/WordPiece model, post-processor.
 * Truncation and padding, which tokenizers.js does not do, follow the Rust `tokenizers` rules used
 * by the fast T5 tokenizer: the text is truncated on the right to max_length minus the special
 * tokens the post-processor adds (so "</s>" is always kept), then padded on the right with the pad
 * token, mask 0 on padding.
 *
 * Left out of prompt_clean: `ftfy.fix_text` (mojibake repair), which WanPipeline applies only when
 * the Python package ftfy is installed; no JS port exists. Prompts that are already valid text
 * (the common case) are unaffected.
 * Known tokenizers.js approximation: the `Precompiled` normalizer (SentencePiece charsmap) is
 * implemented as NFKC plus control-character handling rather than by reading the charsmap.
 */
import { sha256 } from "../util/hash.ts";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { decodeHTML } from "entities";
import { MixCacheError } from "../errors.ts";

/** WanPipeline's default max_sequence_length in `__call__`. */
export const WAN_MAX_SEQUENCE_LENGTH = 512;

// Python `str.isspace()` (used by str.strip()) and the Unicode White_Space property (the `regex`
// module's \s for str patterns). They differ in U+001C..U+001F (isspace only).
const PY_STRIP_CHARS = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const WHITE_SPACE = "\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const STRIP_RE = new RegExp(`^[${PY_STRIP_CHARS}]+|[${PY_STRIP_CHARS}]+$`, "g");
const WS_RUN_RE = new RegExp(`[${WHITE_SPACE}]+`, "g");

/** Python's `str.strip()` with no argument. */
export function pyStrip(s: string): string {
  return s.replace(STRIP_RE, "");
}

/** `html.unescape` (HTML5 named and numeric character references, legacy names without ';'). */
export function htmlUnescape(s: string): string {
  return s.includes("&") ? decodeHTML(s) : s;
}

/** WanPipeline `basic_clean` without ftfy: html.unescape(html.unescape(text)).strip(). */
export function basicClean(text: string): string {
  return pyStrip(htmlUnescape(htmlUnescape(text)));
}

/** WanPipeline `whitespace_clean`: re.sub(r"\s+", " ", text).strip(). */
export function whitespaceClean(text: string): string {
  return pyStrip(text.replace(WS_RUN_RE, " "));
}

/** WanPipeline `prompt_clean` (minus ftfy, see the module comment). */
export function promptClean(text: string): string {
  return whitespaceClean(basicClean(text));
}

export interface PaddedEncoding {
  /** Token ids, padded with the pad id to maxLength. */
  ids: Int32Array;
  /** 1 for real tokens (including "</s>"), 0 for padding. */
  mask: Uint8Array;
  /** Real sequence length: the number of ones in the mask (WanPipeline's seq_lens). */
  length: number;
  /** The prompt after prompt_clean (what was tokenized). */
  cleaned: string;
  /** Whether text tokens were dropped to fit maxLength. */
  truncated: boolean;
  /** Text tokens before truncation (without special tokens). */
  textTokens: number;
}

export interface EncodeOptions {
  /** Padded length (default 512, WanPipeline's max_sequence_length). */
  maxLength?: number;
  /** Apply WanPipeline's prompt_clean first (default true). */
  clean?: boolean;
}

type Json = Record<string, unknown>;

function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") return (v as Json).content as string;
  return undefined;
}

function readJsonFile(path: string, what: string): Json {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new MixCacheError("CONFIG", `cannot read ${what} ${path}: ${(e as Error).message}`, "point at the model's tokenizer/ folder (it holds tokenizer.json)");
  }
  try {
    const v = JSON.parse(text);
    if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not a JSON object");
    return v as Json;
  } catch (e) {
    throw new MixCacheError("CONFIG", `${what} ${path} is not valid JSON: ${(e as Error).message}`, "re-download the tokenizer files");
  }
}

/**
 * A tokenizer.json tokenizer with WanPipeline's prompt handling. Construct with `fromPath` (a
 * tokenizer/ folder or a tokenizer.json; tokenizer_config.json beside it is read when present) or
 * from parsed JSON.
 */
export class HfTokenizer {
  private readonly tok: Tokenizer;
  /** Id of the padding token. */
  readonly padId: number;
  /** Ids the post-processor puts before / after the text (T5: none / ["</s>"]). */
  readonly prefixIds: readonly number[];
  readonly suffixIds: readonly number[];
  /** One more than the largest token id (model vocabulary plus added tokens). */
  readonly vocabSize: number;
  /** sha256 of the tokenizer.json and tokenizer_config.json contents (cache keys). */
  readonly fingerprint: string;

  constructor(tokenizerJson: Json, tokenizerConfig: Json = {}, readonly source = "<memory>") {
    const fail = (msg: string, fix = "use the tokenizer.json from the model's tokenizer/ folder"): never => {
      throw new MixCacheError("CONFIG", `tokenizer ${source}: ${msg}`, fix);
    };
    for (const k of ["model", "normalizer", "pre_tokenizer", "post_processor", "decoder"])
      if (!(k in tokenizerJson)) fail(`tokenizer.json has no "${k}" field (a tokenizers-library tokenizer.json has all five, null where unused)`);
    if (!Array.isArray(tokenizerJson.added_tokens)) tokenizerJson = { ...tokenizerJson, added_tokens: [] };
    const cfg: Json = { ...tokenizerConfig };
    // tokenizers.js reads eos_token (Unigram lattice) as a plain string
    const eos = tokenContent(cfg.eos_token);
    if (eos !== undefined) cfg.eos_token = eos;
    else delete cfg.eos_token;
    try {
      this.tok = new Tokenizer(tokenizerJson, cfg);
    } catch (e) {
      fail(`tokenizers.js cannot load it: ${(e as Error).message}`);
    }
    const vocab = this.tok.get_vocab(true);
    let maxId = -1;
    for (const id of vocab.values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;

    // pad token: tokenizer_config.json pad_token, else tokenizer.json padding.pad_id, else "<pad>"
    const padTok = tokenContent(cfg.pad_token);
    const padding = tokenizerJson.padding as Json | null | undefined;
    let padId: number | undefined;
    if (padTok !== undefined) {
      padId = this.tok.token_to_id(padTok);
      if (padId === undefined) fail(`pad_token ${JSON.stringify(padTok)} of tokenizer_config.json is not in the vocabulary`);
    } else if (padding && typeof padding.pad_id === "number") padId = padding.pad_id;
    else padId = this.tok.token_to_id("<pad>");
    this.padId = padId ?? fail("no padding token (no pad_token in tokenizer_config.json, no padding in tokenizer.json, no <pad> in the vocabulary)", "add tokenizer_config.json with \"pad_token\" beside tokenizer.json");

    // Special tokens of the post-processor, located by post-processing a one-token probe.
    const probe = "\u0000mixcache-probe\u0000";
    const pp = this.tok.post_processor;
    let processed: string[] = [probe];
    if (pp) processed = pp([probe], null, true).tokens;
    const at = processed.indexOf(probe);
    if (at < 0 || processed.indexOf(probe, at + 1) >= 0) fail("its post-processor does not wrap a single sequence once");
    const toId = (t: string): number => {
      const id = this.tok.token_to_id(t);
      if (id === undefined) fail(`post-processor token ${JSON.stringify(t)} is not in the vocabulary`);
      return id;
    };
    this.prefixIds = processed.slice(0, at).map(toId);
    this.suffixIds = processed.slice(at + 1).map(toId);
    this.fingerprint = sha256(`${JSON.stringify(tokenizerJson)}\0${JSON.stringify(tokenizerConfig)}`);
  }

  /** Load from a tokenizer/ folder or a tokenizer.json path (tokenizer_config.json beside it is optional). */
  static fromPath(path: string): HfTokenizer {
    let file = path;
    if (existsSync(path) && statSync(path).isDirectory()) file = join(path, "tokenizer.json");
    if (!existsSync(file))
      throw new MixCacheError("CONFIG", `no tokenizer.json at ${file}`, "point at the model's tokenizer/ folder (WanPipeline layout: <model>/tokenizer/tokenizer.json)");
    const json = readJsonFile(file, "tokenizer");
    const cfgPath = join(dirname(file), "tokenizer_config.json");
    const cfg = existsSync(cfgPath) ? readJsonFile(cfgPath, "tokenizer config") : {};
    return new HfTokenizer(json, cfg, file);
  }

  /** Number of special tokens the post-processor adds to one sequence. */
  get specialTokenCount(): number {
    return this.prefixIds.length + this.suffixIds.length;
  }

  /** Token ids of `text`, without special tokens, no cleaning. */
  textIds(text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  /** Token strings of `text` (no special tokens), for inspection. */
  tokenize(text: string): string[] {
    return this.tok.tokenize(text, { add_special_tokens: false });
  }

  /** Ids with special tokens, unpadded and untruncated (`tokenizer(text).input_ids`). */
  encodeIds(text: string): number[] {
    return [...this.prefixIds, ...this.textIds(text), ...this.suffixIds];
  }

  decode(ids: ArrayLike<number>, skipSpecialTokens = true): string {
    const list = Array.from(ids);
    if (list.length === 0) return "";
    return this.tok.decode(list, { skip_special_tokens: skipSpecialTokens });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /**
   * WanPipeline's tokenizer call: prompt_clean, tokenize with special tokens, truncate the text on
   * the right so text + special tokens fit `maxLength`, pad on the right with the pad id.
   */
  encode(prompt: string, opts: EncodeOptions = {}): PaddedEncoding {
    const maxLength = opts.maxLength ?? WAN_MAX_SEQUENCE_LENGTH;
    const nSpecial = this.specialTokenCount;
    if (!Number.isInteger(maxLength) || maxLength <= nSpecial)
      throw new MixCacheError("USAGE", `maxLength must be an integer > ${nSpecial} (the special tokens), got ${maxLength}`, `use ${WAN_MAX_SEQUENCE_LENGTH} (WanPipeline's default)`);
    if (typeof prompt !== "string") throw new MixCacheError("USAGE", `prompt must be a string, got ${typeof prompt}`);
    const cleaned = opts.clean === false ? prompt : promptClean(prompt);
    const text = this.textIds(cleaned);
    const keep = Math.min(text.length, maxLength - nSpecial);
    const ids = new Int32Array(maxLength).fill(this.padId);
    const mask = new Uint8Array(maxLength);
    let n = 0;
    for (const id of this.prefixIds) ids[n++] = id;
    for (let i = 0; i < keep; i++) ids[n++] = text[i];
    for (const id of this.suffixIds) ids[n++] = id;
    mask.fill(1, 0, n);
    return { ids, mask, length: n, cleaned, truncated: keep < text.length, textTokens: text.length };
  }
}

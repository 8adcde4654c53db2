/**
 * HunyuanVideoPipeline's two tokenizers and its prompt template (diffusers
 * pipelines/hunyuan_video/pipeline_hunyuan_video.py):
 *
 *   _get_llama_prompt_embeds:  text = template.format(prompt)
 *                              tokenizer(text, max_length=max_sequence_length + crop_start,
 *                                        padding="max_length", truncation=True)   -> ids, attention_mask
 *   _get_clip_prompt_embeds:   tokenizer_2(prompt, padding="max_length", max_length=77, truncation=True)
 *
 * Tokenization is @huggingface/tokenizers (through src/text/hf-tokenizer.ts's HfTokenizer, used
 * with no prompt cleaning). Special tokens, padding and truncation follow transformers:
 *  - tokenizer/ (LLaVA-Llama-3, loaded by the pipeline as LlamaTokenizerFast): "<|begin_of_text|>"
 *    first when add_bos_token (default true), eos last only when add_eos_token
 *    (LlamaTokenizerFast.update_post_processor); pad token and padding side from
 *    tokenizer_config.json (diffusers' conversion script saves padding_side "right"; left padding
 *    is refused: cropping the template's first crop_start tokens assumes right padding);
 *  - tokenizer_2/ (CLIP-L): tokenizer.json when the folder has one, else vocab.json + merges.txt
 *    (what the slow CLIPTokenizer a diffusers folder saves), turned into the tokenizer.json that
 *    transformers' CLIPConverter (convert_slow_tokenizer.py) builds: NFC, whitespace runs -> " ",
 *    lowercase; CLIP's split regex; byte-level BPE with "</w>" word ends; "<|startoftext|>" $A
 *    "<|endoftext|>". It matches the slow CLIPTokenizer on ordinary text; the slow one's optional
 *    ftfy repair and BasicTokenizer CJK splitting are not reproduced.
 * The text is truncated on the right to max_length minus the special tokens, then padded on the
 * right with the pad id, mask 0 on padding (the Rust tokenizers' rules the fast tokenizers use).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, MixCacheError } from "../../errors.ts";
import { sha256 } from "../../util/hash.ts";
import { HfTokenizer } from "../../text/hf-tokenizer.ts";

/** A prompt template: Python str.format text with one "{}" for the prompt, and the tokens to crop. */
export interface PromptTemplate {
  template: string;
  /** Leading tokens cropped from the embeddings and mask (diffusers: computed when absent/null). */
  cropStart?: number | null;
}

/** diffusers' DEFAULT_PROMPT_TEMPLATE of HunyuanVideoPipeline. */
export const HUNYUAN_PROMPT_TEMPLATE: Readonly<PromptTemplate> = Object.freeze({
  template:
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: " +
    "1. The main content and theme of the video." +
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects." +
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects." +
    "4. background environment, light, style and atmosphere." +
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>" +
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>",
  cropStart: 95,
});

/** HunyuanVideoPipeline.encode_prompt's max_sequence_length (tokens kept after the crop). */
export const HUNYUAN_MAX_SEQUENCE_LENGTH = 256;
/** _get_llama_prompt_embeds' num_hidden_layers_to_skip: hidden_states[-(2 + 1)]. */
export const HUNYUAN_HIDDEN_LAYERS_TO_SKIP = 2;
/** _get_clip_prompt_embeds' max_sequence_length. */
export const CLIP_MAX_LENGTH = 77;

type Json = Record<string, unknown>;

function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") return (v as Json).content as string;
  return undefined;
}

function readJson(path: string, component: string, fix: string): Json {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`${component}: cannot read ${path}: ${(e as Error).message}`, fix);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${component}: ${path} is not valid JSON: ${(e as Error).message}`, fix);
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new ConfigError(`${component}: ${path} is not a JSON object`, fix);
  return v as Json;
}

/** tokenizer_config.json with special_tokens_map.json's entries where the config has none (transformers reads both). */
function readTokenizerConfig(dir: string, component: string, fix: string): Json {
  const cfgPath = join(dir, "tokenizer_config.json");
  const cfg = existsSync(cfgPath) ? readJson(cfgPath, component, fix) : {};
  const mapPath = join(dir, "special_tokens_map.json");
  if (existsSync(mapPath)) {
    const map = readJson(mapPath, component, fix);
    for (const [k, v] of Object.entries(map)) if (cfg[k] === undefined || cfg[k] === null) cfg[k] = v;
  }
  return cfg;
}

/**
 * Python's `template.format(prompt)` for a template with one positional field: "{}" or "{0}" is the
 * prompt, "{{" and "}}" are literal braces; anything else is an error (as str.format would raise).
 */
export function formatTemplate(template: string, prompt: string): string {
  let out = "";
  let fields = 0;
  for (let i = 0; i < template.length; i++) {
    const ch = template[i];
    if (ch === "{") {
      if (template[i + 1] === "{") {
        out += "{";
        i++;
      } else if (template[i + 1] === "}") {
        out += prompt;
        fields++;
        i++;
      } else if (template.startsWith("{0}", i)) {
        out += prompt;
        fields++;
        i += 2;
      } else throw new MixCacheError("USAGE", `prompt template: unsupported field at offset ${i} (only "{}" and "{0}"; write "{{" for a literal brace)`, "use a template with one {} where the prompt goes");
    } else if (ch === "}") {
      if (template[i + 1] !== "}") throw new MixCacheError("USAGE", `prompt template: single "}" at offset ${i}`, 'write "}}" for a literal brace');
      out += "}";
      i++;
    } else out += ch;
  }
  if (fields === 0) throw new MixCacheError("USAGE", "prompt template has no {} for the prompt", "use a template with one {} where the prompt goes (HunyuanVideo's default template)");
  return out;
}

/** The text before the template's prompt field (with "{{"/"}}" unescaped). */
function templatePrefix(template: string): string {
  const marker = "\u0000prompt\u0000";
  const full = formatTemplate(template, marker);
  return full.slice(0, full.indexOf(marker));
}

export interface PaddedIds {
  /** [maxLength] token ids, right-padded with the pad id. */
  ids: Int32Array;
  /** [maxLength] 1 for real tokens, 0 for padding. */
  mask: Uint8Array;
  /** Real tokens (special tokens included): the ones in the mask. */
  length: number;
  /** Whether text tokens were cut to fit maxLength. */
  truncated: boolean;
}

function padIds(prefix: readonly number[], text: readonly number[], suffix: readonly number[], padId: number, maxLength: number): PaddedIds {
  const nSpecial = prefix.length + suffix.length;
  if (!Number.isInteger(maxLength) || maxLength <= nSpecial) throw new MixCacheError("USAGE", `max length must be an integer above the ${nSpecial} special tokens, got ${maxLength}`);
  const keep = Math.min(text.length, maxLength - nSpecial);
  const ids = new Int32Array(maxLength).fill(padId);
  const mask = new Uint8Array(maxLength);
  let n = 0;
  for (const id of prefix) ids[n++] = id;
  for (let i = 0; i < keep; i++) ids[n++] = text[i];
  for (const id of suffix) ids[n++] = id;
  mask.fill(1, 0, n);
  return { ids, mask, length: n, truncated: keep < text.length };
}

/** Load tokenizer.json with a merged tokenizer config. */
function loadHf(json: Json, cfg: Json, source: string, component: string, fix: string): HfTokenizer {
  try {
    return new HfTokenizer(json, cfg, source);
  } catch (e) {
    if (e instanceof MixCacheError) throw new ConfigError(`${component}: ${e.message.split("\n")[0]}`, e.fix ?? fix);
    throw e;
  }
}

function idOf(hf: HfTokenizer, token: string, what: string, component: string, fix: string): number {
  const id = hf.tokenToId(token);
  if (id === undefined) throw new ConfigError(`${component}: ${what} ${JSON.stringify(token)} is not in the vocabulary`, fix);
  return id;
}

export interface LlamaEncoding extends PaddedIds {
  /** The templated text that was tokenized. */
  text: string;
}

/** The LLaVA-Llama-3 tokenizer (tokenizer/) with LlamaTokenizerFast's special tokens and padding. */
export class LlamaPromptTokenizer {
  readonly prefixIds: readonly number[];
  readonly suffixIds: readonly number[];
  readonly padId: number;
  readonly fingerprint: string;
  /** Things that differ from what a plain tokenizer.json would do (reported, not fatal). */
  readonly warnings: string[] = [];

  constructor(readonly hf: HfTokenizer, cfg: Json, readonly source: string) {
    const C = `tokenizer ${source}`;
    const FIX = "use the tokenizer/ folder of a HunyuanVideo diffusers checkpoint (LLaVA-Llama-3 tokenizer.json + tokenizer_config.json)";
    const side = cfg.padding_side;
    if (side !== "right")
      throw new ConfigError(
        side === undefined
          ? `${C}: tokenizer_config.json has no "padding_side"; HunyuanVideoPipeline loads this tokenizer as LlamaTokenizerFast, whose default is left padding, and cropping the template's first crop_start tokens needs right padding`
          : `${C}: padding_side is ${JSON.stringify(side)}; cropping the template's first crop_start tokens needs right padding`,
        'set "padding_side": "right" in tokenizer_config.json (diffusers\' convert_hunyuan_video_to_diffusers.py saves it so)',
      );
    const trunc = cfg.truncation_side ?? "right";
    if (trunc !== "right") throw new ConfigError(`${C}: truncation_side ${JSON.stringify(trunc)} is not supported`, 'use "truncation_side": "right" (the default)');
    const pad = tokenContent(cfg.pad_token);
    if (pad === undefined)
      throw new ConfigError(`${C}: no pad_token in tokenizer_config.json or special_tokens_map.json; transformers refuses padding="max_length" without one`, `${FIX}; its pad token is "<pad>"`);
    this.padId = idOf(hf, pad, "pad_token", C, FIX);
    // LlamaTokenizerFast.update_post_processor: "{bos}:0 $A:0" (+ " {eos}:0" when add_eos_token)
    const prefix: number[] = [];
    const suffix: number[] = [];
    if (cfg.add_bos_token !== false) prefix.push(idOf(hf, tokenContent(cfg.bos_token) ?? "<s>", "bos_token", C, FIX));
    if (cfg.add_eos_token === true) suffix.push(idOf(hf, tokenContent(cfg.eos_token) ?? "</s>", "eos_token", C, FIX));
    this.prefixIds = prefix;
    this.suffixIds = suffix;
    if (prefix.join() !== hf.prefixIds.join() || suffix.join() !== hf.suffixIds.join())
      this.warnings.push(`${C}: tokenizer.json's post-processor adds [${hf.prefixIds}] ... [${hf.suffixIds}], LlamaTokenizerFast (add_bos_token/add_eos_token) [${prefix}] ... [${suffix}]; the latter is used, as HunyuanVideoPipeline loads LlamaTokenizerFast`);
    this.fingerprint = sha256(`llama-tokenizer/1\0${hf.fingerprint}\0${prefix}\0${suffix}\0${this.padId}`);
  }

  static fromDir(dir: string): LlamaPromptTokenizer {
    const C = `tokenizer ${dir}`;
    const FIX = "download the tokenizer/ folder of the HunyuanVideo diffusers checkpoint (tokenizer.json, tokenizer_config.json, special_tokens_map.json)";
    const file = join(dir, "tokenizer.json");
    if (!existsSync(file)) throw new ConfigError(`${C}: no tokenizer.json`, FIX);
    const json = readJson(file, C, FIX);
    const cfg = readTokenizerConfig(dir, C, FIX);
    return new LlamaPromptTokenizer(loadHf(json, cfg, file, C, FIX), cfg, file);
  }

  get vocabSize(): number {
    return this.hf.vocabSize;
  }

  /** tokenizer(text, max_length, padding="max_length", truncation=True). */
  encodeText(text: string, maxLength: number): LlamaEncoding {
    return { ...padIds(this.prefixIds, this.hf.textIds(text), this.suffixIds, this.padId, maxLength), text };
  }

  /** The templated prompt, tokenized to max_sequence_length + crop_start. */
  encodePrompt(prompt: string, template: PromptTemplate, maxSequenceLength: number): LlamaEncoding & { cropStart: number } {
    if (typeof prompt !== "string") throw new MixCacheError("USAGE", `prompt must be a string, got ${typeof prompt}`);
    const cropStart = this.cropStart(template);
    return { ...this.encodeText(formatTemplate(template.template, prompt), maxSequenceLength + cropStart), cropStart };
  }

  /**
   * crop_start: the template's value, or diffusers' fallback when it is None: the template tokenized
   * on its own (placeholder included) minus 2 ("<|eot_id|>" and the placeholder).
   */
  cropStart(template: PromptTemplate): number {
    const c = template.cropStart;
    if (c !== undefined && c !== null) {
      if (!Number.isInteger(c) || c < 0) throw new MixCacheError("USAGE", `prompt template crop_start must be a non-negative integer, got ${c}`);
      return c;
    }
    return this.prefixIds.length + this.hf.textIds(template.template).length + this.suffixIds.length - 2;
  }

  /** Tokens before the prompt in a templated text (BOS + the template's text before "{}"). */
  templatePrefixTokens(template: string): number {
    return this.prefixIds.length + this.hf.textIds(templatePrefix(template)).length;
  }
}

/**
 * The tokenizer.json transformers' CLIPConverter makes from a slow CLIPTokenizer's vocab.json and
 * merges.txt (convert_slow_tokenizer.py).
 */
export function clipTokenizerJsonFromVocab(vocab: Record<string, number>, merges: string[], cfg: Json): Json {
  const bos = tokenContent(cfg.bos_token) ?? "<|startoftext|>";
  const eos = tokenContent(cfg.eos_token) ?? "<|endoftext|>";
  const unk = tokenContent(cfg.unk_token) ?? "<|endoftext|>";
  const special = (content: string) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
  const added = [...new Set([bos, eos, unk])].filter((t) => vocab[t] !== undefined).map(special);
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: "Sequence", normalizers: [{ type: "NFC" }, { type: "Replace", pattern: { Regex: "\\s+" }, content: " " }, { type: "Lowercase" }] },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" }, behavior: "Removed", invert: true },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: { type: "RobertaProcessing", sep: [eos, vocab[eos]], cls: [bos, vocab[bos]], trim_offsets: false, add_prefix_space: false },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: unk, continuing_subword_prefix: "", end_of_word_suffix: "</w>", fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

/** The CLIP-L tokenizer (tokenizer_2/): CLIPTokenizer(prompt, padding="max_length", max_length, truncation=True). */
export class ClipPromptTokenizer {
  readonly padId: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly fingerprint: string;

  constructor(readonly hf: HfTokenizer, readonly source: string, readonly format: "tokenizer.json" | "vocab.json+merges.txt") {
    const C = `tokenizer_2 ${source}`;
    if (hf.prefixIds.length !== 1 || hf.suffixIds.length !== 1)
      throw new ConfigError(`${C}: the post-processor adds [${hf.prefixIds}] ... [${hf.suffixIds}], not one start and one end token`, 'use the CLIP tokenizer of HunyuanVideo ("<|startoftext|>" $A "<|endoftext|>")');
    this.bosId = hf.prefixIds[0];
    this.eosId = hf.suffixIds[0];
    this.padId = hf.padId;
    this.fingerprint = sha256(`clip-tokenizer/1\0${hf.fingerprint}`);
  }

  static fromDir(dir: string): ClipPromptTokenizer {
    const C = `tokenizer_2 ${dir}`;
    const FIX = "download the tokenizer_2/ folder of the HunyuanVideo diffusers checkpoint (CLIP-L: vocab.json + merges.txt, or tokenizer.json, with tokenizer_config.json)";
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError(`${C}: no such folder`, FIX);
    const cfg = readTokenizerConfig(dir, C, FIX);
    // CLIPTokenizer's pad token is "<|endoftext|>" unless the config names another
    if (tokenContent(cfg.pad_token) === undefined) cfg.pad_token = "<|endoftext|>";
    const file = join(dir, "tokenizer.json");
    if (existsSync(file)) return new ClipPromptTokenizer(loadHf(readJson(file, C, FIX), cfg, file, C, FIX), file, "tokenizer.json");
    const vocabPath = join(dir, "vocab.json");
    const mergesPath = join(dir, "merges.txt");
    if (!existsSync(vocabPath) || !existsSync(mergesPath))
      throw new ConfigError(`${C}: neither tokenizer.json nor vocab.json + merges.txt`, FIX);
    const vocab = readJson(vocabPath, C, FIX) as Record<string, number>;
    for (const [k, v] of Object.entries(vocab))
      if (!Number.isInteger(v) || (v as number) < 0) throw new ConfigError(`${C}: vocab.json maps ${JSON.stringify(k)} to ${JSON.stringify(v)}, not a token id`, FIX);
    let lines: string[];
    try {
      lines = readFileSync(mergesPath, "utf8").trim().split("\n");
    } catch (e) {
      throw new ConfigError(`${C}: cannot read ${mergesPath}: ${(e as Error).message}`, FIX);
    }
    // CLIPTokenizer: merges.txt minus its "#version" line, at most 49152 - 256 - 2 merges
    if (lines[0]?.startsWith("#version")) lines = lines.slice(1);
    const merges = lines.slice(0, 49152 - 256 - 2).map((l) => l.replace(/\r$/, ""));
    for (const m of merges) if (m.split(" ").length !== 2) throw new ConfigError(`${C}: merges.txt line ${JSON.stringify(m)} is not "a b"`, FIX);
    return new ClipPromptTokenizer(loadHf(clipTokenizerJsonFromVocab(vocab, merges, cfg), cfg, vocabPath, C, FIX), vocabPath, "vocab.json+merges.txt");
  }

  get vocabSize(): number {
    return this.hf.vocabSize;
  }

  encode(prompt: string, maxLength = CLIP_MAX_LENGTH): PaddedIds {
    if (typeof prompt !== "string") throw new MixCacheError("USAGE", `prompt must be a string, got ${typeof prompt}`);
    return padIds(this.hf.prefixIds, this.hf.textIds(prompt), this.hf.suffixIds, this.padId, maxLength);
  }
}

/**
 * A small hand-written SentencePiece-Unigram tokenizer.json in the layout of the umT5 / T5 fast
 * tokenizer (ids 0 <pad>, 1 </s>, 2 <unk>; normalizer, Metaspace pre-tokenizer with "▁", Unigram
 * model, TemplateProcessing "$A </s>", Metaspace decoder), plus tokenizer_config.json and
 * special_tokens_map.json as transformers writes them. 48 pieces.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** [piece, log-probability]; the index is the id. */
export const TINY_PIECES: [string, number][] = [
  ["<pad>", 0], ["</s>", 0], ["<unk>", 0],
  ["▁", -2.5], ["▁a", -3], ["▁the", -3], ["▁red", -4], ["▁blue", -4], ["▁circle", -4.5], ["▁square", -4.5],
  ["▁mov", -5], ["ing", -4], ["▁moving", -5.5], ["▁left", -4.5], ["▁right", -4.5], ["▁on", -4], ["▁black", -4.5],
  ["▁back", -5], ["ground", -5], ["▁cat", -5], ["▁dog", -5], [",", -4], [".", -4], ["&", -6], ["<", -6], [">", -6],
  ["s", -5], ["e", -6], ["a", -6], ["b", -6], ["c", -6], ["d", -6], ["g", -6], ["i", -6], ["k", -6], ["l", -6],
  ["n", -6], ["o", -6], ["r", -6], ["t", -6], ["u", -6], ["m", -6], ["v", -6], ["h", -6], ["q", -6], ["w", -6],
  ["▁big", -5], ["▁small", -5],
];

export function unigramTokenizerJson(pieces: [string, number][] = TINY_PIECES): Record<string, unknown> {
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0, "<pad>"), special(1, "</s>"), special(2, "<unk>")],
    normalizer: {
      type: "Sequence",
      normalizers: [{ type: "NFKC" }, { type: "Replace", pattern: { Regex: " {2,}" }, content: " " }],
    },
    pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "</s>", type_id: 0 } }],
      pair: [{ Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "</s>", type_id: 0 } }, { Sequence: { id: "B", type_id: 0 } }, { SpecialToken: { id: "</s>", type_id: 0 } }],
      special_tokens: { "</s>": { id: "</s>", ids: [1], tokens: ["</s>"] } },
    },
    decoder: { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true },
    model: { type: "Unigram", unk_id: 2, vocab: pieces, byte_fallback: false },
  };
}

export const TINY_TOKENIZER_CONFIG = {
  eos_token: "</s>",
  pad_token: "<pad>",
  unk_token: "<unk>",
  extra_ids: 0,
  model_max_length: 1000000000000000019884624838656,
  tokenizer_class: "T5Tokenizer",
  clean_up_tokenization_spaces: true,
};

/** Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `dir`. */
export function writeUnigramTokenizer(dir: string, pieces: [string, number][] = TINY_PIECES): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(unigramTokenizerJson(pieces), null, 1));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(TINY_TOKENIZER_CONFIG, null, 1));
  writeFileSync(join(dir, "special_tokens_map.json"), JSON.stringify({ eos_token: "</s>", pad_token: "<pad>", unk_token: "<unk>" }));
  return dir;
}

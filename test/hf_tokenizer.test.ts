/**
 * The Hugging Face tokenizer.json tokenizer and WanPipeline's prompt handling, on a small
 * hand-written Unigram tokenizer (test/support/unigramTokenizer.ts): prompt_clean, tokenization,
 * "</s>" appended, truncation keeping "</s>", right padding with <pad>, the attention mask and the
 * real length.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./support/tmp.ts";
import { HfTokenizer, WAN_MAX_SEQUENCE_LENGTH, basicClean, htmlUnescape, promptClean, pyStrip, whitespaceClean } from "../src/text/hf-tokenizer.ts";
import { MixCacheError } from "../src/errors.ts";
import { TINY_PIECES, unigramTokenizerJson, writeUnigramTokenizer } from "./support/unigramTokenizer.ts";

const dir = writeUnigramTokenizer(tempDir("mixcache-tok-"));
const tok = HfTokenizer.fromPath(dir);
const empty = tempDir("mixcache-tok-bad-");
const id = (piece: string) => TINY_PIECES.findIndex(([p]) => p === piece);

test("prompt_clean: html unescape twice, whitespace runs collapsed, stripped", () => {
  assert.equal(htmlUnescape("&lt;b&gt; &amp; &copy; &#x41;&#66;"), "<b> & © AB");
  assert.equal(basicClean("  a &amp;amp; b  "), "a & b"); // unescaped twice: &amp;amp; -> &amp; -> &
  assert.equal(basicClean("&amp;amp;amp;"), "&amp;"); // only twice, like html.unescape(html.unescape(x))
  assert.equal(whitespaceClean(" a\t\tb\n\nc\u3000d\u00a0 e "), "a b c d e");
  assert.equal(pyStrip("\x1c\x1f a \u2003"), "a"); // str.strip() also strips U+001C..U+001F
  assert.equal(promptClean("  A red   circle,\n moving &amp;amp; left  "), "A red circle, moving & left");
  assert.equal(promptClean(""), "");
  assert.equal(promptClean(" \n\t "), "");
});

test("tokenizer.json loads: vocabulary, pad id, the post-processor's </s>", () => {
  assert.equal(tok.vocabSize, TINY_PIECES.length);
  assert.equal(tok.padId, 0);
  assert.deepEqual(tok.prefixIds, []);
  assert.deepEqual(tok.suffixIds, [1]);
  assert.equal(tok.specialTokenCount, 1);
  assert.match(tok.fingerprint, /^[0-9a-f]{64}$/);
});

test("Unigram segmentation: best-scoring pieces, ▁ word starts, unknown characters -> <unk>", () => {
  assert.deepEqual(tok.tokenize("a red circle moving left"), ["▁a", "▁red", "▁circle", "▁moving", "▁left"]);
  // no piece "▁background": the Viterbi path takes ▁back + ground
  assert.deepEqual(tok.tokenize("the background."), ["▁the", "▁back", "ground", "."]);
  assert.deepEqual(tok.encodeIds("a red circle moving left"), [id("▁a"), id("▁red"), id("▁circle"), id("▁moving"), id("▁left"), 1]);
  const unk = tok.encodeIds("a zzz");
  assert.deepEqual(unk, [id("▁a"), id("▁"), 2, 1]);
  assert.equal(tok.decode(tok.encodeIds("a red circle")), "a red circle");
});

test("WanPipeline tokenization: pad to 512 with <pad>, mask, real length with </s>", () => {
  const e = tok.encode("  a red  circle &amp;amp; a blue square ");
  assert.equal(e.cleaned, "a red circle & a blue square");
  assert.equal(e.ids.length, WAN_MAX_SEQUENCE_LENGTH);
  assert.equal(e.mask.length, WAN_MAX_SEQUENCE_LENGTH);
  const want = [id("▁a"), id("▁red"), id("▁circle"), id("▁"), id("&"), id("▁a"), id("▁blue"), id("▁square"), 1];
  assert.deepEqual([...e.ids.subarray(0, want.length)], want);
  assert.equal(e.length, want.length);
  assert.ok(e.ids.subarray(want.length).every((v) => v === 0), "padding is <pad> (0)");
  assert.deepEqual([...e.mask.subarray(0, want.length + 2)], [...want.map(() => 1), 0, 0]);
  assert.equal(e.mask.reduce((a, b) => a + b, 0), e.length, "seq_len = mask.sum()");
  assert.equal(e.truncated, false);
  assert.equal(e.textTokens, want.length - 1);
});

test("empty prompt (the CFG negative): just </s>", () => {
  const e = tok.encode("");
  assert.equal(e.length, 1);
  assert.equal(e.ids[0], 1);
  assert.equal(e.mask[0], 1);
  assert.equal(e.mask[1], 0);
});

test("truncation: text cut on the right to max_length - 1, </s> kept, no padding", () => {
  const words = "a red circle moving left on the black background";
  const full = tok.encodeIds(words); // 10 text tokens + </s>
  assert.equal(full.length, 11);
  const e = tok.encode(words, { maxLength: 6 });
  assert.deepEqual([...e.ids], [...full.slice(0, 5), 1]);
  assert.deepEqual([...e.mask], [1, 1, 1, 1, 1, 1]);
  assert.equal(e.length, 6);
  assert.equal(e.truncated, true);
  assert.equal(e.textTokens, 10);
  // exactly fitting: not truncated, no padding
  const fit = tok.encode(words, { maxLength: 11 });
  assert.deepEqual([...fit.ids], full);
  assert.equal(fit.truncated, false);
  // one more than needed: one pad
  const pad = tok.encode(words, { maxLength: 12 });
  assert.deepEqual([...pad.mask], [...full.map(() => 1), 0]);
  assert.equal(pad.ids[11], 0);
  // a long prompt at the default 512
  const long = tok.encode(Array(400).fill("a red").join(" "));
  assert.equal(long.length, 512);
  assert.equal(long.ids[511], 1);
  assert.equal(long.ids[510], id("▁a")); // text token 511 of "a red a red ..."
  assert.equal(long.ids[509], id("▁red"));
  assert.equal(long.truncated, true);
});

test("clean: false tokenizes the prompt as given", () => {
  const e = tok.encode("a &amp; b", { clean: false, maxLength: 16 });
  assert.equal(e.cleaned, "a &amp; b");
  assert.ok(e.length > tok.encode("a &amp; b", { maxLength: 16 }).length);
});

test("bad tokenizer inputs are MixCacheErrors with a fix", () => {
  assert.throws(() => HfTokenizer.fromPath(empty), (e: unknown) => e instanceof MixCacheError && e.code === "CONFIG" && /no tokenizer\.json/.test(e.message) && !!e.fix);
  const broken = join(empty, "broken");
  mkdirSync(broken);
  writeFileSync(join(broken, "tokenizer.json"), "{ not json");
  assert.throws(() => HfTokenizer.fromPath(broken), (e: unknown) => e instanceof MixCacheError && /not valid JSON/.test(e.message));
  const json = unigramTokenizerJson();
  delete (json as Record<string, unknown>).model;
  assert.throws(() => new HfTokenizer(json), (e: unknown) => e instanceof MixCacheError && /"model"/.test(e.message));
  assert.throws(() => tok.encode("a", { maxLength: 1 }), (e: unknown) => e instanceof MixCacheError && e.code === "USAGE");
  assert.throws(() => new HfTokenizer(unigramTokenizerJson(), { pad_token: "<nope>" }), (e: unknown) => e instanceof MixCacheError && /pad_token/.test(e.message));
});

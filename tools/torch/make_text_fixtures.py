"""Writes the text-encoder test vectors: tests/fixtures/text_pixart/ and text_flux/.

Tiny random T5 and CLIP text encoders built with transformers' own classes (T5EncoderModel,
CLIPTextModel) and tokenizers trained here in the real formats: a SentencePiece unigram model
(nmt_nfkc normalisation) converted by transformers to T5's tokenizer.json (Precompiled
normaliser, Metaspace, `</s>` template, 100 <extra_id_*> tokens), and a byte-level BPE with
CLIP's normaliser, split pattern, `</w>` suffix and start/end-of-text template, its special
tokens last (so end-of-text is the highest id, as in CLIP's vocabulary). The captions are encoded
as diffusers' pipelines encode them (PixArtAlphaPipeline.encode_prompt with clean_caption=False:
lower().strip(), padding to max_length, the attention mask into T5, the "" negative;
FluxPipeline.encode_prompt: CLIP's pooler_output at 77 tokens, T5 at max_sequence_length with no
mask), the models in float64 from the stored weights, results rounded to f32. With
--diffusers-src the same captions also go through diffusers' own encode_prompt and the largest
difference is written into the README.

  python3 tools/torch/make_text_fixtures.py --out tests/fixtures [--diffusers-src DIR]
"""

import argparse
import io
import json
import os
import random
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stio import save_file  # noqa: E402

WORDS = ("a an the red green blue tiny huge happy sad old young cat dog fox owl robot castle tree "
         "river mountain city street car boat rocket flower garden pizza apple banana coffee cup "
         "on in under over near with and of at by painting photo sketch drawing watercolor neon "
         "sunset night morning winter summer rain snow light dark glowing golden silver wooden "
         "portrait landscape close-up detailed simple colorful black white purple orange yellow").split()
EXTRA = ["café au lait", "naïve art", "Über cool", "ｆｕｌｌ ｗｉｄｔｈ", "3D render, 4k", "don't stop",
         "it's a dog's life", "jalapeño", "smörgåsbord", "São Paulo", "1024x1024", "high-res!!!",
         "(masterpiece)", "\"quoted\" text", "tab\tand  spaces"]

PROMPTS = [
    "A red apple on a table",
    "  Neon Café at NIGHT, watercolor  ",
    "naïve ｆｕｌｌ ｗｉｄｔｈ sketch: it's 3D!",
    "",
    # long enough to be cut at every max length used here (T5: 120 tokens, CLIP: 77)
    " ".join(["a tiny happy robot with a golden cup of coffee under the glowing winter sky"] * 14),
]


def corpus(n=3000, seed=7):
    r = random.Random(seed)
    lines = []
    for _ in range(n):
        k = r.randint(3, 12)
        words = [r.choice(WORDS) for _ in range(k)]
        if r.random() < 0.4:
            words.insert(r.randint(0, k), r.choice(EXTRA))
        s = " ".join(words)
        lines.append(s.capitalize() if r.random() < 0.3 else s)
    return lines


def spm_model(lines):
    """A SentencePiece unigram model trained on `lines`, T5's special pieces: <pad> 0, </s> 1, <unk> 2."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=240, model_type="unigram",
        normalization_rule_name="nmt_nfkc", character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", num_threads=4)
    return model.getvalue()


EXTRA_IDS = 100


class SlowT5:
    """T5Tokenizer (slow, legacy) as PixArt's pipeline loads it: SentencePiece ids + </s>, cut, padded."""

    def __init__(self, blob):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_proto=blob)

    def __len__(self):
        return self.sp.get_piece_size() + EXTRA_IDS

    def __call__(self, texts, max_length):
        ids = []
        for t in texts:
            x = self.sp.encode(t)[: max_length - 1] + [1]
            ids.append(x + [0] * (max_length - len(x)))
        ids = torch.tensor(ids)
        return ids, mask_of(ids)


def mask_of(ids):
    """1 up to and including each row's </s>, 0 after (pad is id 0, and so may be nothing else)."""
    eos = (ids == 1).long().argmax(1, keepdim=True)
    return (torch.arange(ids.shape[1])[None] <= eos).long()


def t5_fast(blob):
    """T5's tokenizer.json (transformers' T5Converter): the model's Precompiled normaliser, runs of
    spaces to one, Metaspace (prepend always), `$A </s>`, <extra_id_*> tokens after the pieces."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    m = pb.ModelProto()
    m.ParseFromString(blob)
    tk = Tokenizer(models.Unigram([(p.piece, p.score) for p in m.pieces], 2, False))
    tk.normalizer = normalizers.Sequence([normalizers.Precompiled(m.normalizer_spec.precompiled_charsmap),
                                          normalizers.Replace(Regex(" {2,}"), " ")])
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                      special_tokens=[("</s>", 1)])
    n = len(m.pieces)
    extra = [AddedToken(f"<extra_id_{i}>", special=True, normalized=False) for i in range(EXTRA_IDS - 1, -1, -1)]
    tk.add_special_tokens(extra)  # ids n … n + 99, <extra_id_0> last as in T5Tokenizer
    assert tk.token_to_id("<extra_id_0>") == n + EXTRA_IDS - 1
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                   model_max_length=512)


def save_t5_tokenizer(out_dir, blob, fast):
    """spiece.model + tokenizer_config.json as PixArt's tokenizer/ (no tokenizer.json), or with `fast`
    the tokenizer.json too (FLUX's tokenizer_2/)."""
    os.makedirs(out_dir, exist_ok=True)
    if fast is not None:
        fast.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "spiece.model"), "wb") as f:
        f.write(blob)
    cfg = {"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
           "extra_ids": EXTRA_IDS, "model_max_length": 512, "legacy": True,
           "additional_special_tokens": [f"<extra_id_{i}>" for i in range(EXTRA_IDS)]}
    json.dump(cfg, open(os.path.join(out_dir, "tokenizer_config.json"), "w"), indent=2)


def clip_tokenizer(out_dir, lines):
    """CLIP's tokenizer.json: NFC, whitespace runs to one space, lowercase; CLIP's split pattern and
    byte-level; BPE with </w>; <|startoftext|> … <|endoftext|>. The vocabulary is trained here and laid
    out as CLIP's: bytes, bytes + </w>, merges, then start and end of text (the highest ids)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bos, eos = "<|startoftext|>", "<|endoftext|>"

    def build(model):
        tk = Tokenizer(model)
        tk.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"),
                                 behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        tk.decoder = decoders.ByteLevel()
        return tk

    tk = build(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    trainer = trainers.BpeTrainer(vocab_size=480, special_tokens=[], end_of_word_suffix="</w>",
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(lines, trainer)
    with tempfile.TemporaryDirectory() as tmp:
        tk.model.save(tmp)
        merges = [tuple(l.split(" ")) for l in open(os.path.join(tmp, "merges.txt"), encoding="utf-8").read().splitlines()
                  if l and not l.startswith("#")]
    ids = {}
    for t, _ in sorted(tk.get_vocab().items(), key=lambda kv: kv[1]):
        ids.setdefault(t, len(ids))
    for t in list(ids):
        if not t.endswith("</w>"):
            ids.setdefault(t + "</w>", len(ids))
    ids[bos] = len(ids)
    ids[eos] = len(ids)
    tk = build(models.BPE(vocab=ids, merges=merges, unk_token=eos, end_of_word_suffix="</w>",
                          continuing_subword_prefix=""))
    tk.post_processor = processors.RobertaProcessing((eos, ids[eos]), (bos, ids[bos]), trim_offsets=False,
                                                     add_prefix_space=False)
    tk.add_special_tokens([bos, eos])
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token=eos, unk_token=eos,
                                   pad_token=eos, model_max_length=77)
    fast.save_pretrained(out_dir)
    return fast


def perturb_norms(model, g):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n and n.endswith("weight"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            if "norm" in n and n.endswith("bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def make_t5(vocab, d_model, g, dtype):
    from transformers import T5Config, T5EncoderModel
    cfg = T5Config(vocab_size=vocab, d_model=d_model, d_kv=8, d_ff=40, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=32, relative_attention_max_distance=128,
                   feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
                   is_encoder_decoder=False, use_cache=False)
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
    m = T5EncoderModel(cfg).eval()
    with torch.no_grad():  # T5's init leaves the bias table small: make positions matter
        m.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight.mul_(8)
    perturb_norms(m, g)
    return m.to(dtype)


def make_clip(vocab, hidden, g):
    from transformers import CLIPTextConfig, CLIPTextModel
    cfg = CLIPTextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=3, max_position_embeddings=77, hidden_act="quick_gelu",
                         layer_norm_eps=1e-5, projection_dim=hidden, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
    m = CLIPTextModel(cfg).eval()
    perturb_norms(m, g)
    return m


def as_f64(model, folder):
    """The model as saved, reloaded and run in float64 (bf16 weights upcast exactly)."""
    try:
        return type(model).from_pretrained(folder, dtype=torch.float64).eval()
    except TypeError:  # transformers < 4.56
        return type(model).from_pretrained(folder, torch_dtype=torch.float64).eval()


def run_t5(enc, ids, mask):
    with torch.no_grad():
        return enc(ids, attention_mask=mask)[0]


def pixart(out, lines, g, diffusers_src, blob):
    d = os.path.join(out, "text_pixart")
    shutil.rmtree(d, ignore_errors=True)
    save_t5_tokenizer(os.path.join(d, "tokenizer"), blob, None)
    slow = SlowT5(blob)
    enc = make_t5(len(slow), 32, g, torch.float32)
    enc.save_pretrained(os.path.join(d, "text_encoder"))
    enc = as_f64(enc, os.path.join(d, "text_encoder"))
    L = 120
    processed = [p.lower().strip() for p in PROMPTS]  # diffusers' _text_preprocessing, clean_caption=False
    ids, mask = slow(processed, L)
    emb = run_t5(enc, ids, mask)
    nids, nmask = slow([""] * len(PROMPTS), L)
    nemb = run_t5(enc, nids, nmask)
    from transformers.models.t5.modeling_t5 import T5Attention
    rel = torch.arange(-600, 601)
    io_t = {
        "input_ids": ids.to(torch.int32), "prompt_attention_mask": mask.float(), "prompt_embeds": emb.float(),
        "negative_prompt_embeds": nemb.float(), "negative_prompt_attention_mask": nmask.float(),
        "t5_buckets_32_128": T5Attention._relative_position_bucket(rel, True, 32, 128).to(torch.int32),
        "t5_buckets_64_256": T5Attention._relative_position_bucket(rel, True, 64, 256).to(torch.int32),
    }
    note = ""
    if diffusers_src:
      try:
        import diffusers
        fast = t5_fast(blob)
        pipe = diffusers.PixArtAlphaPipeline(tokenizer=fast, text_encoder=enc, vae=None, transformer=None,
                                             scheduler=None)
        pe, pm, ne, nm = pipe.encode_prompt(PROMPTS, True, "", 1, torch.device("cpu"), clean_caption=False,
                                            max_sequence_length=L)
        diff = max((pe - emb).abs().max().item(), (ne - nemb).abs().max().item())
        same = torch.equal(pm.cpu(), mask) and torch.equal(nm.cpu(), nmask)
        note = (f" Checked against diffusers' `PixArtAlphaPipeline.encode_prompt` with the tokenizer.json form of "
                f"the same model: masks {'equal' if same else 'DIFFERENT'}, largest difference {diff:.1e}.")
      except Exception as e:  # noqa: BLE001 - the fixture stands without the check
        print(f"diffusers check (PixArt) failed: {e!r}")
    save_file(io_t, os.path.join(d, "io.safetensors"), {"prompts": json.dumps(PROMPTS), "max_length": str(L)})
    write_readme(d, "T5 encoder (PixArt-α's text_encoder/ + tokenizer/) in small: d_model 32 (pixart_tiny_sq's "
                 "caption_channels), 4 heads of d_kv 8, d_ff 40, 2 layers, gated-gelu, 32 buckets up to 128, f32. "
                 "tokenizer/ as PixArt's: spiece.model (a SentencePiece unigram, nmt_nfkc, 240 pieces) and "
                 "tokenizer_config.json, no tokenizer.json; ids as the slow T5Tokenizer gives them (SentencePiece, "
                 f"+ </s>), {len(slow)} with the extra ids. io.safetensors: `input_ids`, `prompt_attention_mask`, "
                 f"`prompt_embeds` of the metadata's prompts at {L} tokens (lower().strip()), their \"\" negatives, "
                 "and T5's relative position buckets of -600..600 (bidirectional; 32 buckets/128 and 64/256)." + note)


def flux(out, lines, g, diffusers_src, blob):
    d = os.path.join(out, "text_flux")
    shutil.rmtree(d, ignore_errors=True)
    clip_tok = clip_tokenizer(os.path.join(d, "tokenizer"), lines)
    t5tok = t5_fast(blob)
    save_t5_tokenizer(os.path.join(d, "tokenizer_2"), blob, t5tok)
    clip = make_clip(len(clip_tok), 12, g)
    clip.save_pretrained(os.path.join(d, "text_encoder"))
    t5 = make_t5(len(t5tok), 24, g, torch.bfloat16)  # FLUX ships T5 in bf16, in shards
    t5.save_pretrained(os.path.join(d, "text_encoder_2"), max_shard_size="20KB")
    clip = as_f64(clip, os.path.join(d, "text_encoder"))
    t5 = as_f64(t5, os.path.join(d, "text_encoder_2"))
    L = 512
    c = clip_tok(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        pooled = clip(c.input_ids).pooler_output
    t = t5tok(PROMPTS, padding="max_length", max_length=L, truncation=True, return_tensors="pt")
    emb = run_t5(t5, t.input_ids, None)
    slow_ids, _ = SlowT5(blob)([p.strip() for p in PROMPTS], L)
    fast_ids = t5tok([p.strip() for p in PROMPTS], padding="max_length", max_length=L, truncation=True,
                     return_tensors="pt").input_ids
    agree = torch.equal(slow_ids, fast_ids)
    note = f" On the stripped prompts tokenizer_2's tokenizer.json and spiece.model give {'the same' if agree else 'DIFFERENT'} ids."
    if diffusers_src:
      try:
        import diffusers
        pipe = diffusers.FluxPipeline(scheduler=None, vae=None, text_encoder=clip, tokenizer=clip_tok,
                                      text_encoder_2=t5, tokenizer_2=t5tok, transformer=None)
        pe, pp, _ = pipe.encode_prompt(PROMPTS, None, torch.device("cpu"), max_sequence_length=L)
        diff = max((pe - emb).abs().max().item(), (pp - pooled).abs().max().item())
        note += f" Checked against diffusers' `FluxPipeline.encode_prompt` (largest difference {diff:.1e})."
      except Exception as e:  # noqa: BLE001
        print(f"diffusers check (FLUX) failed: {e!r}")
    save_file({"clip_input_ids": c.input_ids.to(torch.int32), "pooled_prompt_embeds": pooled.float(),
               "t5_input_ids": t.input_ids.to(torch.int32), "prompt_embeds": emb.float()},
              os.path.join(d, "io.safetensors"), {"prompts": json.dumps(PROMPTS), "max_sequence_length": str(L)})
    write_readme(d, "FLUX's text encoders in small: text_encoder/ a CLIPTextModel (hidden 12 = flux_dev's "
                 "pooled_projection_dim, 3 heads, 2 layers, quick_gelu, eos_token_id 2 as FLUX's config) with a "
                 f"byte-level BPE tokenizer/ ({len(clip_tok)} tokens, end of text last; ids from the Rust tokenizers); "
                 "text_encoder_2/ a T5 encoder (d_model 24 = flux_dev's joint_attention_dim) stored in bf16 in shards "
                 "(model.safetensors.index.json) with tokenizer_2/ (text_pixart's SentencePiece model, plus the "
                 "tokenizer.json transformers' T5Converter makes of it). io.safetensors: `clip_input_ids` and "
                 f"`pooled_prompt_embeds` (77 tokens), `t5_input_ids` and `prompt_embeds` ({L} tokens, no mask) of "
                 "the metadata's prompts, as given (not stripped)." + note)


def write_readme(d, about):
    name = os.path.basename(d)
    with open(os.path.join(d, "README.md"), "w") as f:
        f.write(f"# {name}\n\n{about}\n\nWritten by `tools/torch/make_text_fixtures.py` (transformers "
                "T5EncoderModel / CLIPTextModel, float64 from the stored weights; tokenizers trained there).\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures")
    ap.add_argument("--diffusers-src", default=None, help="a diffusers src/ folder to check against")
    args = ap.parse_args()
    if args.diffusers_src:
        sys.path.insert(0, args.diffusers_src)
    g = torch.Generator().manual_seed(2026)
    lines = corpus()
    blob = spm_model(lines)
    pixart(args.out, lines, g, args.diffusers_src, blob)
    flux(args.out, lines, g, args.diffusers_src, blob)
    for name in ("text_pixart", "text_flux"):
        print(open(os.path.join(args.out, name, "README.md")).read())


if __name__ == "__main__":
    main()

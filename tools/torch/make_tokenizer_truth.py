"""Writes tests/fixtures/text_tokenizer_truth.json: the token ids the reference tokenizers give
for captions whose Unicode the NFKC approximation of @huggingface/tokenizers normalizes
otherwise than SentencePiece's table (the zero-width joiner of emoji sequences, U+A7F1), and
for other normalization cases (ligatures, full width, compatibility characters, combining marks,
odd whitespace).

- "spiece": the SentencePiece library on each fixture's spiece.model, with T5's `</s>` (1)
  appended, as transformers' slow T5Tokenizer (PixArt's pipeline) encodes;
- "fast": the Rust tokenizers library on tokenizer_2/tokenizer.json (FLUX's T5TokenizerFast).

  python3 tools/torch/make_tokenizer_truth.py --fixtures tests/fixtures
"""

import argparse
import json
import os

import sentencepiece as spm
import tokenizers

CAPTIONS = [
    "a family 👨\u200d👩\u200d👧 at the beach",
    "x\u200dy and x\u200cy and x\u200by",
    "\ua7f1 and \ua7f1\u0301",
    "ﬁne ﬂowers ﬀ",
    "ＦＵＬＬ ｗｉｄｔｈ １２３",
    "① ㎏ ™ ½ ²",
    "e\u0301te\u0301 and \u212b and A\u030a",
    "nbsp\u00a0here\u3000ideographic\u2009thin",
    "tab\tnew\nline\r\nend",
    "ｶﾀｶﾅ and ㌀",
    "control\u0007char\u0000null",
    "Привет мир, 你好, مرحبا",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", default="tests/fixtures")
    a = ap.parse_args()
    out = {"captions": CAPTIONS, "spiece": {}, "fast": {}}
    for name, folder in [("text_pixart", "tokenizer"), ("text_flux", "tokenizer_2")]:
        sp = spm.SentencePieceProcessor(model_file=os.path.join(a.fixtures, name, folder, "spiece.model"))
        out["spiece"][name] = [sp.encode(c) + [1] for c in CAPTIONS]
    fast = tokenizers.Tokenizer.from_file(os.path.join(a.fixtures, "text_flux", "tokenizer_2", "tokenizer.json"))
    out["fast"]["text_flux"] = [fast.encode(c).ids for c in CAPTIONS]
    out["versions"] = {"sentencepiece": spm.__version__, "tokenizers": tokenizers.__version__}
    path = os.path.join(a.fixtures, "text_tokenizer_truth.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()

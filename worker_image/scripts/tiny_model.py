"""Build (once) the tiny Llama model the real-vLLM tests serve, with no hub download.

A byte-level BPE tokenizer trained with `tokenizers` on the checked-in corpus beside this script,
and a randomly initialised `LlamaForCausalLM` (hidden 128, 2 layers, 4 heads, 2 KV heads) from a
fixed seed, saved with `save_pretrained`. The same inputs give the same bytes, so the files'
sha256 sums are checked against the checked-in manifest: a cached model whose files differ is
rebuilt, and a build whose files differ from the manifest fails (the library versions changed
what they write; look at the diff and refresh with --write-manifest).

Run with the vLLM environment's python (it has torch, transformers and tokenizers):

    $(bash worker_image/scripts/vllm-env.sh --print) worker_image/scripts/tiny_model.py
    ... tiny_model.py --print            # the model directory (no build)
    ... tiny_model.py --check            # exit 1 when the cached model is missing or differs
    ... tiny_model.py --write-manifest   # rebuild and record the hashes (after a library bump)

Env: TOKENSCALE_TINY_MODEL (default ${XDG_CACHE_HOME:-~/.cache}/tokenscale/tiny-llama).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "tiny_model_corpus.txt"
MANIFEST = HERE / "tiny_model.sha256.json"
SEED = 20260414
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|begin|>", "<|end|>", "<|pad|>"]
# A chat template is required for /v1/chat/completions; this one is the plainest that keeps roles.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SHAPE = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
}


def model_dir() -> Path:
    override = os.environ.get("TOKENSCALE_TINY_MODEL")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tokenscale" / "tiny-llama"


def file_hashes(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def expected_hashes() -> dict[str, str]:
    data: dict[str, str] = json.loads(MANIFEST.read_text(encoding="utf-8"))["files"]
    return data


def _build_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.read_text(encoding="utf-8").splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL_TOKENS[0],
        eos_token=SPECIAL_TOKENS[1],
        pad_token=SPECIAL_TOKENS[2],
        model_max_length=SHAPE["max_position_embeddings"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)


def _build_model(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(out)
    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
        **SHAPE,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)


def build(out: Path) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    _build_tokenizer(out)
    _build_model(out)


def _build_checked(target: Path, write_manifest: bool) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-llama-", dir=target.parent))
    try:
        build(tmp)
        got = file_hashes(tmp)
        if write_manifest:
            MANIFEST.write_text(json.dumps({"seed": SEED, "files": got}, indent=2) + "\n")
        elif got != expected_hashes():
            diff = sorted(
                k
                for k in got.keys() | expected_hashes().keys()
                if got.get(k) != expected_hashes().get(k)
            )
            print(
                f"tiny-model: the build differs from {MANIFEST.name} in {diff}: the library "
                "versions changed what they write; inspect, then rerun with --write-manifest",
                file=sys.stderr,
            )
            return 1
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)  # whole directory at once: a reader never sees half a model
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(p.stat().st_size for p in target.iterdir())
    print(
        f"[tiny-model] built {target} in {time.monotonic() - start:.1f} s, {size / 1e6:.1f} MB",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str]) -> int:
    target = model_dir()
    if "--print" in argv:
        print(target)
        return 0
    cached_ok = target.is_dir() and file_hashes(target) == expected_hashes()
    if "--check" in argv:
        if not cached_ok:
            print(f"tiny model missing or changed at {target} (run: make setup)", file=sys.stderr)
        return 0 if cached_ok else 1
    if cached_ok and "--write-manifest" not in argv:
        print(target)
        return 0
    code = _build_checked(target, "--write-manifest" in argv)
    if code == 0:
        print(target)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

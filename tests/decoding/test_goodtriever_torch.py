"""The torch (transformers) Goodtriever loop: batched with a KV cache, each row as if alone,
and steered by a toxic store. A tiny randomly initialised Llama stands in for a real
checkpoint (loading SmolLM2 from its GGUF into torch takes minutes on this machine); the
model class, cache and loop are the real ones."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("faiss")
np = pytest.importorskip("numpy")

from specguard.decoding import Datastore, IndexKind
from specguard.decoding.loop_torch import TorchDetoxGenerator
from specguard.decoding.retrieval import DetoxSettings, Retriever

VOCAB = 64


@pytest.fixture(scope="module")
def tiny():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    words = ["<pad>", "<eos>"] + [f"w{i}" for i in range(VOCAB - 2)]
    tk = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    tk.pre_tokenizer = Whitespace()
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>"
    )
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=0, eos_token_id=1, bos_token_id=1,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    return model, tok


def test_batched_rows_equal_rows_alone(tiny):
    model, tok = tiny
    gen = TorchDetoxGenerator(model, tok, None, top_p=1.0)
    prompts = [[5, 9, 12, 30, 7], [40], [3, 3, 8]]
    batched = gen.generate(prompts, max_new_tokens=8, temperature=0.0)
    alone = [gen.generate([p], max_new_tokens=8, temperature=0.0)[0] for p in prompts]
    assert batched == alone and all(len(r) > 0 for r in batched)


def test_toxic_store_moves_the_torch_loop(tiny, tmp_path):
    model, tok = tiny
    plain = TorchDetoxGenerator(model, tok, None, top_p=1.0)
    prompt = [5, 9, 12]
    base = plain.generate([prompt], max_new_tokens=6, temperature=0.0)[0]
    # the store: the hidden state after each context token, pointing at the token that followed
    ids = prompt + base
    with torch.no_grad():
        hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
    space = plain.key_space()
    assert space.dim == 32 and space.tokenizer.vocab_size == VOCAB
    store = Datastore.create(tmp_path / "tox", space, index_kind=IndexKind.FLAT)
    store.add("answer", hidden[:-1].numpy(), np.asarray(ids[1:], np.int32))
    store.save()

    def run(alpha: float, search: str = "auto") -> list[int]:
        s = DetoxSettings(toxic=[tmp_path / "tox"], alpha=alpha, k=4, temperature=10.0,
                          top_p=1.0, search=search)
        g = TorchDetoxGenerator(model, tok, Retriever.open(s, space), top_p=1.0)
        return g.generate([prompt, [40, 41]], max_new_tokens=6, temperature=0.0)[0]

    assert run(0.0) == base
    steered = run(20.0)
    assert steered[0] != base[0]
    # the GPU path (torch search on the model's device; CPU here) decodes the same tokens
    assert run(20.0, search="torch") == steered


def _tiny_encoder(tiny, **kw):
    from specguard.decoding.encoders import TorchKeyEncoder
    from specguard.decoding.keyspace import ModelId

    model, tok = tiny
    return TorchKeyEncoder.from_model(model, tok, ModelId(name="tiny-llama"), **kw)


def test_torch_key_encoder_reads_each_documents_final_norm_states(tiny):
    """Documents batched by length with right padding give the keys each gets alone: the
    final-norm state after token i, valued by token i+1; cut at max_tokens; one-token and
    empty documents give no keys; the answer keeps the input order."""
    import asyncio

    model, tok = tiny
    enc = _tiny_encoder(tiny, max_tokens=6, batch=2)
    texts = ["w5 w9 w12", "w40", "w3 w3 w8 w20 w21 w22 w23 w24 w25", "", "w7 w8", "w9 w10 w11 w12"]
    out = asyncio.run(enc.encode(texts))
    assert len(out) == len(texts)
    for text, (keys, values) in zip(texts, out, strict=True):
        ids = tok(text, add_special_tokens=False)["input_ids"][:6]
        if len(ids) < 2:
            assert keys.shape == (0, 32) and values.shape == (0,)
            continue
        with torch.no_grad():
            alone = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
        assert keys.dtype == np.float32 and keys.shape == (len(ids) - 1, 32)
        assert np.allclose(keys, alone[:-1].numpy(), atol=1e-5)
        assert values.tolist() == ids[1:]
    # the torch loop and the encoder name one key space, so its stores serve the loop
    assert enc.key_space() == TorchDetoxGenerator(model, tok, None,
                                                  model_id=enc.key_space().model).key_space()


def test_recipe_build_counts_keys_per_encoder(tiny, tmp_path, data_root):
    """A build started by one encoder and resumed by another of the same key space (llama.cpp
    then torch, as the detox stores were built) says in the manifest how many keys each read."""
    import asyncio
    import json

    from specguard.decoding import Recipe, RecipeBuild, Side

    recipe_path = tmp_path / "tiny.yaml"
    recipe_path.write_text(
        "name: tiny\nmax_tokens: 8\nsides:\n"
        "  toxic:\n    max_keys: 40\n    sources:\n"
        "      - {dataset: davidson_hate_offensive, where: {harmful: true}}\n"
        "  nontoxic:\n    max_keys: 40\n    sources:\n"
        "      - {dataset: davidson_hate_offensive, where: {harmful: false}}\n")
    recipe = Recipe.load(recipe_path)
    torch_enc = _tiny_encoder(tiny, max_tokens=8, batch=4)

    class Other:  # another encoder of the same key space
        name = "llama.cpp"

        def key_space(self):
            return torch_enc.key_space()

        async def encode(self, texts):
            return await torch_enc.encode(texts)

    build = RecipeBuild(recipe, torch_enc.key_space(), tmp_path / "root")

    class Stop(Exception):
        pass

    def stop(side, progress):
        raise Stop

    with pytest.raises(Stop):
        asyncio.run(build.encode(Other(), chunk_docs=2, on_chunk=stop))
    state = asyncio.run(build.encode(torch_enc, chunk_docs=2))
    assert all(p.finished for p in state.values())
    for side in Side:
        store = build.finalize(side)
        made = json.loads((build.store_path(side) / "manifest.json").read_text())["build"]
        assert sum(made["encoders"].values()) == len(store) > 0
        assert set(made["encoders"]) <= {"llama.cpp", "torch"} and "torch" in made["encoders"]
    first = json.loads((build.folder / ".work" / "toxic" / "shards.jsonl").read_text()
                       .splitlines()[0])
    assert first["encoder"] == "llama.cpp"

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

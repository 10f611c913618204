"""reward.model: load/save/score reward models and ensembles, on tiny random models with the real tokenizers."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing here may download

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from reward.meta import FILE as META_FILE
from reward.meta import RewardMeta
from reward.model import RewardEnsemble, RewardModel, RewardModelError, load_reward_model
from reward.pairs import score_pairs
from reward.protocols import RewardScorer
from reward.text import encode
from rlhfkit.models.gguf import is_converted
from rlhfkit.models.registry import BUNDLED, converted_dir, load_tokenizer, package_dir
from tests.tiny_models import save_tiny, tiny_causal_lm, tiny_encoder

SMOL = BUNDLED["smollm2-135m-instruct"]
SMOL_GGUF = package_dir(SMOL) / SMOL.path / SMOL.gguf_file

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]
PROMPTS = [
    "Hi",
    CHAT,
    "Explain photosynthesis in one paragraph, please, with an example. " * 3,
    "What is 2 + 2?",
    "word " * 400,  # truncated to max_length
    "Tell me a joke.",
    CHAT,
]
RESPONSES = [
    "Hello!",
    "Paris.",
    "Plants turn light, water and carbon dioxide into sugar and oxygen. " * 2,
    "4",
    "An answer to a very long prompt.",
    "Why did the chicken cross the road? To get to the other side. " * 5,
    "It is Paris, on the Seine, and has been the capital for centuries.",
]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine intra-op threads only wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return load_tokenizer("minilm-l6")


@pytest.fixture(scope="module")
def smol_tokenizer():
    converted = converted_dir(SMOL)
    if is_converted(SMOL_GGUF, converted):  # a previous test run converted it: its tokenizer.json loads fastest
        return AutoTokenizer.from_pretrained(str(converted))
    # Straight from the GGUF: the real vocabulary and chat template without the 20 s model conversion.
    return AutoTokenizer.from_pretrained(str(SMOL_GGUF.parent), gguf_file=SMOL_GGUF.name)


def _spread_head(model):
    """A random tiny model's rewards differ by ~1e-4; a larger head spreads them so order mistakes show."""
    with torch.no_grad():
        head = model.classifier if hasattr(model, "classifier") else model.score
        head.weight.mul_(50)
    return model


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, minilm_tokenizer) -> Path:
    model, tok = tiny_encoder(minilm_tokenizer, seed=1)
    _spread_head(model)
    meta = RewardMeta(backbone="minilm-l6", max_length=128, temperature=2.0, extra={"note": "tiny"})
    return RewardModel(model, tok, meta).save(tmp_path_factory.mktemp("rm") / "encoder")


@pytest.fixture(scope="module")
def encoder(encoder_dir) -> RewardModel:
    return RewardModel.load(encoder_dir)


@pytest.fixture(scope="module")
def llama(smol_tokenizer) -> RewardModel:
    tok = copy.deepcopy(smol_tokenizer)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512, num_labels=1,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _spread_head(LlamaForSequenceClassification(config))
    return RewardModel(model, tok, RewardMeta(backbone="smollm2-135m-instruct", max_length=96))


# ---------------------------------------------------------------- save / load


def test_save_and_load_score_identically(encoder_dir, minilm_tokenizer, tmp_path):
    assert {"model.safetensors", "config.json", META_FILE, "tokenizer.json"} <= {p.name for p in encoder_dir.iterdir()}
    assert not list(encoder_dir.parent.glob(".encoder*")), "atomic save leaves no temporary folder behind"
    model, tok = tiny_encoder(minilm_tokenizer, seed=1)
    in_memory = RewardModel(_spread_head(model), tok, RewardMeta(backbone="minilm-l6", max_length=128))
    loaded = RewardModel.load(encoder_dir)
    assert isinstance(loaded, RewardScorer)
    assert loaded.meta == RewardMeta(backbone="minilm-l6", max_length=128, temperature=2.0, extra={"note": "tiny"})
    scores = loaded.score(PROMPTS, RESPONSES)
    # Same weights bit for bit; freshly built and loaded models may still differ in the last float bit (kernels).
    assert torch.allclose(torch.tensor(scores), torch.tensor(in_memory.score(PROMPTS, RESPONSES)), atol=1e-5)
    state, loaded_state = in_memory.model.state_dict(), loaded.model.state_dict()
    assert state.keys() == loaded_state.keys() and all(torch.equal(state[k], loaded_state[k]) for k in state)
    assert RewardModel.load(loaded.save(tmp_path / "again")).score(PROMPTS, RESPONSES) == scores
    assert not loaded.model.training


def test_llama_classifier_round_trip(llama, tmp_path):
    folder = llama.save(tmp_path / "llama")
    loaded = RewardModel.load(folder)
    assert type(loaded.model).__name__ == "LlamaForSequenceClassification"
    assert loaded.model.config.pad_token_id == llama.tokenizer.pad_token_id
    assert torch.allclose(torch.tensor(loaded.score(PROMPTS, RESPONSES)), torch.tensor(llama.score(PROMPTS, RESPONSES)),
                          atol=1e-5)


def test_plain_hf_classifier_folder_gets_default_meta(tmp_path, minilm_tokenizer):
    model, tok = tiny_encoder(minilm_tokenizer)
    folder = save_tiny(model, tok, tmp_path / "plain")
    loaded = RewardModel.load(folder)
    assert loaded.meta.max_length == 512 and loaded.meta.temperature == 1.0 and not loaded.meta.lora


# ---------------------------------------------------------------- scoring


@pytest.mark.parametrize("which", ["encoder", "llama"])
def test_sorted_batches_equal_one_at_a_time(which, request):
    scorer: RewardModel = request.getfixturevalue(which)
    batched = scorer.score(PROMPTS, RESPONSES, batch_size=3)
    single = [scorer.score([p], [r])[0] for p, r in zip(PROMPTS, RESPONSES)]
    assert len(batched) == len(PROMPTS)
    assert torch.allclose(torch.tensor(batched), torch.tensor(single), atol=1e-5)
    # Input order is kept: identical pairs (also at different positions) get identical scores, different ones differ.
    swapped = scorer.score(PROMPTS[::-1], RESPONSES[::-1], batch_size=3)
    assert torch.allclose(torch.tensor(swapped[::-1]), torch.tensor(batched), atol=1e-5)
    assert min(abs(x - y) for i, x in enumerate(batched) for y in batched[i + 1 :]) > 1e-4


def test_scoring_uses_the_shared_encoding(encoder):
    # The long prompt is cut to max_length exactly as reward.text.encode cuts it for training.
    ids = encoder.encode(PROMPTS, RESPONSES)
    assert ids == [encode(encoder.tokenizer, p, r, 128).input_ids for p, r in zip(PROMPTS, RESPONSES)]
    assert max(map(len, ids)) == 128
    assert encoder.score(PROMPTS[4:5], RESPONSES[4:5]) == encoder.score_ids(ids[4:5])


def test_score_stream_matches_score_and_holds_one_window(encoder):
    items = [(PROMPTS[i % len(PROMPTS)], f"{RESPONSES[i % len(RESPONSES)]} #{i}") for i in range(23)]
    pulled = 0

    def source():
        nonlocal pulled
        for item in items:
            pulled += 1
            yield item

    stream = encoder.score_stream(source(), batch_size=4, window=5)
    first = next(stream)
    assert pulled == 5, "the first score must come after reading one window, not the whole stream"
    streamed = [first, *stream]
    assert pulled == len(items)
    expected = encoder.score([p for p, _ in items], [r for _, r in items], batch_size=4)
    assert torch.allclose(torch.tensor(streamed), torch.tensor(expected), atol=1e-5)
    assert list(encoder.score_stream(iter([]), batch_size=4)) == []


def test_compare_uses_the_temperature(encoder):
    prompts, a, b = PROMPTS[:4], RESPONSES[:4], RESPONSES[4:8] + RESPONSES[:1]
    b = b[:4]
    ra, rb = encoder.score(prompts, a), encoder.score(prompts, b)
    assert encoder.meta.temperature == 2.0
    probs = encoder.compare(prompts, a, b)
    assert probs == pytest.approx([_sigmoid((x - y) / 2.0) for x, y in zip(ra, rb)], abs=1e-6)
    assert encoder.compare(prompts, b, a) == pytest.approx([1 - p for p in probs], abs=1e-6)
    hot = copy.copy(encoder)
    hot.meta = RewardMeta(backbone="x", max_length=128, temperature=1.0)
    assert hot.compare(prompts, a, b) == pytest.approx([_sigmoid(x - y) for x, y in zip(ra, rb)], abs=1e-6)


def test_empty_and_mismatched_inputs(encoder):
    assert encoder.score([], []) == []
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        encoder.score(["a", "b"], ["x"])


# ---------------------------------------------------------------- refusals


def test_causal_lm_folder_is_refused(tmp_path, smol_tokenizer):
    model, tok = tiny_causal_lm(copy.deepcopy(smol_tokenizer), hidden_size=16, num_layers=1, num_heads=2)
    folder = save_tiny(model, tok, tmp_path / "causal")
    with pytest.raises(RewardModelError, match="not a sequence classifier") as info:
        RewardModel.load(folder)
    assert "LlamaForCausalLM" in str(info.value) and "score.weight" in str(info.value)


def test_base_encoder_without_head_is_refused(tmp_path, minilm_tokenizer):
    model, tok = tiny_encoder(minilm_tokenizer)
    folder = save_tiny(model.bert, tok, tmp_path / "base")  # a BertModel: no classifier weights
    with pytest.raises(RewardModelError, match="head") as info:
        RewardModel.load(folder)
    assert "classifier.weight" in str(info.value) and "BertModel" in str(info.value)


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(RewardModelError, match="no reward model at .*no such model"):
        RewardModel.load(tmp_path / "nowhere")
    with pytest.raises(RewardModelError):
        load_reward_model(str(tmp_path / "nowhere"))


def test_multi_output_head_is_refused(tmp_path, minilm_tokenizer):
    model, tok = tiny_encoder(minilm_tokenizer, num_labels=2)
    with pytest.raises(RewardModelError, match="2-output"):
        RewardModel.load(save_tiny(model, tok, tmp_path / "two"))


def test_tokenizer_padding(minilm_tokenizer, smol_tokenizer):
    model, _ = tiny_encoder(minilm_tokenizer)
    tok = copy.deepcopy(minilm_tokenizer)
    tok.pad_token = None
    with pytest.raises(RewardModelError, match="neither a pad token nor an eos"):
        RewardModel(model, tok, RewardMeta(backbone="x", max_length=128))
    smol = copy.deepcopy(smol_tokenizer)
    smol.pad_token = None
    config = LlamaConfig(vocab_size=len(smol), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1)
    scorer = RewardModel(LlamaForSequenceClassification(config), smol, RewardMeta(backbone="x", max_length=96))
    assert scorer.tokenizer.pad_token == smol.eos_token
    assert scorer.model.config.pad_token_id == smol.eos_token_id


# ---------------------------------------------------------------- LoRA


def test_lora_adapter_round_trip(tmp_path, minilm_tokenizer):
    from peft import LoraConfig, get_peft_model

    base, tok = tiny_encoder(minilm_tokenizer, seed=3)
    base_dir = save_tiny(base, tok, tmp_path / "base")
    config = LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"], modules_to_save=["classifier"], r=4)
    peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # non-zero B: the adapter really changes the encoder
                param.normal_(0, 0.5)
        head = peft_model.base_model.model.classifier.modules_to_save["default"]
        head.weight.normal_(0, 1.0)
        head.bias.fill_(3.0)
    peft_model.eval()
    in_memory = RewardModel(peft_model, tok, RewardMeta(backbone=str(base_dir), max_length=128))
    expected = in_memory.score(PROMPTS, RESPONSES)

    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    tok.save_pretrained(adapter_dir)
    RewardMeta(backbone=str(base_dir), max_length=128, lora=True).save(adapter_dir)
    assert (adapter_dir / "adapter_config.json").is_file()

    loaded = RewardModel.load(adapter_dir)
    assert not hasattr(loaded.model, "peft_config"), "the adapter is merged for speed"
    scores = loaded.score(PROMPTS, RESPONSES)
    assert torch.allclose(torch.tensor(scores), torch.tensor(expected), atol=1e-5)
    # The head came from the adapter, not the base's random one.
    assert RewardModel.load(base_dir).score(PROMPTS[:2], RESPONSES[:2]) != pytest.approx(scores[:2], abs=1e-3)
    # Saved again, it is a plain full model.
    merged = loaded.save(tmp_path / "merged")
    assert not (merged / "adapter_config.json").exists()
    assert json.loads((merged / META_FILE).read_text())["lora"] is False
    assert RewardModel.load(merged).score(PROMPTS, RESPONSES) == pytest.approx(scores, abs=1e-6)
    # RewardModel.save of a PEFT model writes the adapter (meta.lora true), which loads back the same.
    saved = in_memory.save(tmp_path / "saved-adapter")
    assert (saved / "adapter_config.json").is_file() and RewardMeta.load(saved).lora
    assert RewardModel.load(saved).score(PROMPTS, RESPONSES) == pytest.approx(scores, abs=1e-5)


# ---------------------------------------------------------------- ensemble


def test_ensemble_is_the_mean_and_loads_from_member_folders(tmp_path, minilm_tokenizer, encoder, encoder_dir):
    other, tok = tiny_encoder(minilm_tokenizer, seed=2)
    _spread_head(other)
    second = RewardModel(other, tok, RewardMeta(backbone="minilm-l6", max_length=128, temperature=2.0))
    ensemble = RewardEnsemble([encoder, second])
    assert isinstance(ensemble, RewardScorer) and len(ensemble) == 2
    members = ensemble.score_members(PROMPTS, RESPONSES)
    assert members == [encoder.score(PROMPTS, RESPONSES), second.score(PROMPTS, RESPONSES)]
    mean = [(x + y) / 2 for x, y in zip(*members)]
    assert ensemble.score(PROMPTS, RESPONSES) == pytest.approx(mean, abs=1e-7)
    a, b = RESPONSES[:3], RESPONSES[3:6]
    ra, rb = ensemble.score(PROMPTS[:3], a), ensemble.score(PROMPTS[:3], b)
    assert ensemble.compare(PROMPTS[:3], a, b) == pytest.approx([_sigmoid((x - y) / 2.0) for x, y in zip(ra, rb)])

    # score_pairs: the same rewards and probabilities, with each member reading each (prompt, answer) once.
    seen = []
    hooks = [member.model.register_forward_hook(lambda module, args, kwargs, out: seen.append(
        kwargs["input_ids"].shape[0]), with_kwargs=True) for member in ensemble.members]
    try:
        r_a, r_b, p_a = score_pairs(ensemble, PROMPTS[:3], a, b)
    finally:
        for hook in hooks:
            hook.remove()
    assert sum(seen) == 2 * 2 * 3  # 2 members x (3 answers a + 3 answers b)
    assert r_a == pytest.approx(ra, abs=1e-6) and r_b == pytest.approx(rb, abs=1e-6)
    assert p_a == pytest.approx(ensemble.compare(PROMPTS[:3], a, b), abs=1e-9)

    folder = tmp_path / "ensemble"
    folder.mkdir()
    (folder / "member-0").symlink_to(encoder_dir, target_is_directory=True)
    second.save(folder / "member-1")
    loaded = load_reward_model(folder)
    assert isinstance(loaded, RewardEnsemble) and len(loaded) == 2
    assert loaded.score(PROMPTS, RESPONSES) == pytest.approx(mean, abs=1e-6)
    assert isinstance(load_reward_model(encoder_dir), RewardModel)
    assert isinstance(load_reward_model([encoder_dir, folder / "member-1"]), RewardEnsemble)
    with pytest.raises(RewardModelError, match="no member"):
        RewardEnsemble.load(encoder_dir)


def test_batches_respect_count_and_token_budget(encoder):
    lengths = [10, 200, 50, 50, 120, 7, 300, 64, 64, 64]
    scorer = copy.copy(encoder)
    scorer.max_batch_tokens = 256
    groups = scorer.batches(lengths, batch_size=3)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    flat = [lengths[i] for group in groups for i in group]
    assert flat == sorted(lengths, reverse=True), "longest first, consecutive by length"
    for group in groups:
        assert len(group) <= 3
        assert len(group) == 1 or lengths[group[0]] * len(group) <= 256  # a single over-long one still runs
    assert [len(g) for g in groups] == [1, 1, 2, 3, 3]
    scorer.max_batch_tokens = 10**9
    assert [len(g) for g in scorer.batches(lengths, batch_size=4)] == [4, 4, 2]


def test_text_the_tokenizer_cannot_read_scores_but_warns_once(encoder_dir, llama, caplog):
    """A pool written in a script the reward model's tokenizer lacks: MiniLM's BERT vocabulary has no emoji."""
    from annotation.select import select_pairs
    from preference.pairs import Pair

    encoder = load_reward_model(encoder_dir)  # its own instance: the warning is once per model
    with caplog.at_level("WARNING", logger="reward.model"):
        encoder.score(["Say hi"] * 2, ["Hello there, friend!", "Hi, how are you?"])
        assert not caplog.records  # English: nothing to say
        pool = [Pair(f"🙂 {i}", "🤖🚀🎉 " * (i + 1), "🌧️🌈 " * (i + 2)) for i in range(6)]
        chosen = select_pairs(pool, "uncertainty", 3, scorers=[encoder])
        assert len(chosen) == 3 and all(math.isfinite(s.score) for s in chosen)
        encoder.score([pool[0].prompt], [pool[0].response_a])
    warned = [r.getMessage() for r in caplog.records if "unknown" in r.getMessage()]
    assert len(warned) == 1 and "[UNK]" in warned[0] and "minilm-l6" in warned[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="reward.model"):
        llama.score([pool[0].prompt], [pool[0].response_a])  # byte-level BPE reads every character
    assert not caplog.records

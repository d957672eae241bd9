"""The method registry: the trainer asks the method object, so a new method is one class and one registry line."""

import torch
from conftest import make_model
from helpers import DigitsDataset

from gohsp_hf import GOHSPConfig, GOHSPTrainer
from gohsp_hf.methods import PRUNING_METHODS, PruningMethod


class KeepFirst(PruningMethod):
    """A throwaway method: keeps the first heads and the first groups of every block, and counts its calls."""

    calls: list[str] = []

    def rank_heads(self, model):
        self.calls.append("rank_heads")
        mask = torch.zeros(self.trainer.dims.num_layers, self.trainer.dims.num_heads, dtype=torch.bool)
        mask[:, :2] = True
        return mask

    def group_scores(self, tensors, model, head_mask):
        self.calls.append("group_scores")
        scores = super().group_scores(tensors, model, head_mask)
        return [{kind: -torch.arange(len(value), dtype=torch.float) for kind, value in s.items()} for s in scores]


def test_a_fifth_method_is_one_class_and_one_registry_line(tmp_path, monkeypatch):
    monkeypatch.setitem(PRUNING_METHODS, "keep_first", KeepFirst)  # the registry line
    args = GOHSPConfig(
        str(tmp_path / "out"), method="keep_first", target_sparsity=0.4, admm_max_steps=4, finetune_max_steps=3,
        per_device_train_batch_size=16, use_cpu=True, report_to=[], disable_tqdm=True, save_strategy="no",
    )  # fmt: skip
    trainer = GOHSPTrainer(model=make_model("vit", num_labels=10), args=args, train_dataset=DigitsDataset(0, 64))
    trainer.train()
    assert KeepFirst.calls == ["rank_heads", "group_scores"]
    for layer in trainer.structure.layers:
        assert layer.heads == [0, 1]
        for kept in (layer.qk_dims, layer.v_dims, layer.mlp):
            assert kept == list(range(len(kept)))  # the first groups, by the method's own scores
    assert abs(trainer.results["achieved_sparsity"] - 0.4) < 0.005
    # A one-shot method fine-tunes for the pruning stage's steps too.
    assert [logs[-1]["step"] for logs in trainer.results["log_history"].values()] == [7]
    assert (tmp_path / "out" / "model.safetensors").exists()

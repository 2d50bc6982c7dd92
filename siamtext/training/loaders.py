"""The trainer's data loaders: which rows make up each batch, and how they reach the device.

One global batch per step is chosen by the batch sampler (length-grouped, P classes x K
examples for the batch-mining losses, no duplicates or random:
:mod:`siamtext.data.batching`) and sliced over the data-parallel processes; each process
pads its slice on the CPU and copies it to its device without blocking. On the CPU the
loss embeds in sub-batches (:class:`~siamtext.training.tower.SubBatchedTower`).
:class:`~siamtext.training.trainer.SiamTextTrainer` takes these methods from
:class:`LoadersMixin`.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader

from siamtext.data.batching import choose_batch_sampler, make_batch_sampler
from siamtext.data.prepare import TokenizedDataset, prepare_dataset, resolve_columns
from siamtext.training.arguments import TrainingArguments


class LoadersMixin:
    """The samplers and data loaders of :class:`~siamtext.training.trainer.SiamTextTrainer`
    (a ``transformers.Trainer`` with ``loss``, ``input_format``, ``spec`` and
    ``train_rows`` set)."""

    def _sampler_kind(self, args: TrainingArguments) -> str:
        cached = getattr(self, "_kind", None)
        if cached is not None and cached[0] == args.batch_sampler:
            return cached[1]
        kind = choose_batch_sampler(args.batch_sampler, self.input_format, self.train_rows,
                                    self.spec, self._global_batch_size(args))
        self._kind = (args.batch_sampler, kind)
        return kind

    def _samples_per_class(self, args: TrainingArguments) -> int:
        """K of P x K batches: the argument if set, else the loss's preference."""
        return args.samples_per_class or getattr(self.loss, "samples_per_class", 4)

    @staticmethod
    def _global_batch_size(args: TrainingArguments) -> int:
        """Rows of one forward step over all processes: per-device batch x world size."""
        return args.per_device_train_batch_size * max(1, args.world_size)

    def _make_sampler(self, args: TrainingArguments) -> torch.utils.data.Sampler:
        """This process's slice of the global batches (the global sampler in one process)."""
        return make_batch_sampler(
            self._sampler_kind(args), self.train_rows, self.spec,
            batch_size=args.per_device_train_batch_size, world_size=max(1, args.world_size),
            rank=args.process_index, samples_per_class=self._samples_per_class(args),
            classes_per_batch=args.classes_per_batch, mega_batches=args.mega_batches,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            drop_last=args.dataloader_drop_last)

    def _sub_batch_size(self) -> int:
        size = self.args.sub_batch_size
        if size is None:
            size = 8 if self.args.device.type == "cpu" else 0
        return size

    def get_train_dataloader(self) -> DataLoader:
        """Batches of this process's slice of each global batch, padded on the CPU (pinned on
        a GPU) and copied to the device without blocking."""
        args = self.args
        pin = args.dataloader_pin_memory and args.device.type == "cuda"
        workers = args.dataloader_num_workers
        loader = DataLoader(self.train_rows, batch_sampler=self._make_sampler(args),
                            collate_fn=self.data_collator, num_workers=workers, pin_memory=pin,
                            persistent_workers=workers > 0 and args.dataloader_persistent_workers)
        # The sampler already gives each rank its slice of the global batch: prepare the
        # loader as for one process, so that accelerate does not shard the batches again.
        prepared = prepare_data_loader(loader, device=args.device, num_processes=1,
                                       process_index=0, put_on_device=True, non_blocking=pin)
        self.accelerator._dataloaders.append(prepared)  # as Accelerator.prepare does
        return prepared

    def get_eval_dataloader(self, eval_dataset: Any | None = None) -> DataLoader:
        rows = self.eval_dataset if eval_dataset is None else eval_dataset
        if not isinstance(rows, TokenizedDataset):
            spec = resolve_columns(self.loss, rows, None, "eval_dataset")
            rows = prepare_dataset(self.model, rows, spec, self.args.pretokenize, "eval_dataset")
        order = sorted(range(len(rows)), key=lambda i: -rows.lengths[i])
        bs = self.args.per_device_eval_batch_size
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        loader = DataLoader(rows, batch_sampler=batches, collate_fn=self.data_collator)
        return self.accelerator.prepare(loader)

"""Tiny classification data generated locally (no download): class-dependent Gaussian blobs."""

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset


class DigitsDataModule(LightningDataModule):
    def __init__(self, num_samples: int = 96, num_features: int = 16, num_classes: int = 4,
                 batch_size: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        generator = torch.Generator().manual_seed(seed)
        centers = 2.0 * torch.randn(num_classes, num_features, generator=generator)
        y = torch.arange(num_samples) % num_classes
        x = centers[y] + torch.randn(num_samples, num_features, generator=generator)
        cut = num_samples * 2 // 3
        self.train_set = TensorDataset(x[:cut], y[:cut])
        self.val_set = TensorDataset(x[cut:], y[cut:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

"""Data: image I/O, BT.601 colour conversion, pairing by name, paired augmentation, datasets."""
from diffmf.data.color import merge_luma, rgb_to_ycbcr, split_luma, to_gray, ycbcr_to_rgb
from diffmf.data.dataset import PairedImageDataset, load_pair
from diffmf.data.io import IMAGE_EXTENSIONS, ImageReadError, read_image, to_uint8, write_image
from diffmf.data.pairs import IR_FOLDERS, VI_FOLDERS, Pair, PairingError, collect_pairs, find_modality_dirs, pair_folders
from diffmf.data.sampler import ResumableSampler

__all__ = [
    "IMAGE_EXTENSIONS", "IR_FOLDERS", "VI_FOLDERS", "ImageReadError", "Pair", "PairedImageDataset", "PairingError",
    "ResumableSampler", "collect_pairs", "find_modality_dirs", "load_pair", "merge_luma", "pair_folders", "read_image",
    "rgb_to_ycbcr", "split_luma", "to_gray", "to_uint8", "write_image", "ycbcr_to_rgb",
]

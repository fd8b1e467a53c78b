"""The datasets' finding names mapped to the classifiers' pathology names.

torchxrayvision's models name their outputs ``Effusion``, ``Infiltration``,
``Pleural_Thickening``, ``Lung Opacity``, ... (``xrv.datasets.default_pathologies``); the datasets
write ``Pleural effusion``, ``Infiltrate``, ``Nodule/Mass`` and so on. Each item's class is the
classifier's name, so that its saliency target defaults to the finding annotated. A finding
without a counterpart keeps its own name (the target then falls back as for any unknown class).
"""

from __future__ import annotations

__all__ = ["NIH_FINDINGS", "RSNA_FINDING", "SIIM_FINDING", "VINDR_FINDINGS", "VINDR_NO_FINDING"]

#: NIH ChestX-ray14 ``BBox_List_2017.csv`` findings -> classifier names.
NIH_FINDINGS = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Effusion": "Effusion",
    "Infiltrate": "Infiltration",
    "Infiltration": "Infiltration",
    "Mass": "Mass",
    "Nodule": "Nodule",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}

#: RSNA Pneumonia: ``Target == 1`` boxes are lung opacities suggesting pneumonia.
RSNA_FINDING = "Pneumonia"

#: SIIM-ACR: every mask is a pneumothorax.
SIIM_FINDING = "Pneumothorax"

#: VinDr-CXR ``class_name`` -> (``class_id``, classifier name).
VINDR_FINDINGS = {
    "Aortic enlargement": (0, "Enlarged Cardiomediastinum"),
    "Atelectasis": (1, "Atelectasis"),
    "Calcification": (2, "Calcification"),
    "Cardiomegaly": (3, "Cardiomegaly"),
    "Consolidation": (4, "Consolidation"),
    "ILD": (5, "ILD"),
    "Infiltration": (6, "Infiltration"),
    "Lung Opacity": (7, "Lung Opacity"),
    "Nodule/Mass": (8, "Nodule"),
    "Other lesion": (9, "Lung Lesion"),
    "Pleural effusion": (10, "Effusion"),
    "Pleural thickening": (11, "Pleural_Thickening"),
    "Pneumothorax": (12, "Pneumothorax"),
    "Pulmonary fibrosis": (13, "Fibrosis"),
}

#: VinDr-CXR's negative class.
VINDR_NO_FINDING = ("No finding", 14)

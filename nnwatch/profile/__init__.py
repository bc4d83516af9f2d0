"""Training-set signatures: streaming two-pass builder, exact merge, safe storage."""

from .builder import ProfileBuilder
from .schema import Calibration, Profile, RangeStats, SectionStats
from .signature import FallbackWarning, class_gaussian, compile_tables
from .store import load_profile, save_profile

__all__ = ["ProfileBuilder", "Profile", "RangeStats", "SectionStats", "Calibration", "FallbackWarning",
           "class_gaussian", "compile_tables", "load_profile", "save_profile"]

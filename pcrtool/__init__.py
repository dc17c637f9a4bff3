"""pcrtool: measured-boot toolkit for people who ship secure Linux images."""

__version__ = "0.1.0"

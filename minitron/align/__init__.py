"""Alignment after distillation: SFT and the DPO/IPO/RPO preference losses."""

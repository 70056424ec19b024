"""Evaluation: the field's metrics (SSIM, PSNR, LPIPS, LMD, CPBD, Sync) and the held-out harness."""

"""Progressive rollout's plain computation (no Django): which instances serve the candidate, and the guards."""

"""Policy updates: generation, SFT, DPO, PPO, GRPO/RLOO. Built in issues 5 and 6. Imports: `reward` and below."""

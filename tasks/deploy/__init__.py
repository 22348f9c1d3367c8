"""The deploy flow's stages: the stage table (`dag`), its scheduler, one room per stage
(`stages/`), their typed inputs and results (`models`), and the deploy report."""

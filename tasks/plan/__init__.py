"""What a deploy or a teardown would do, without doing it (`--plan`): the entries' models
and the `--json` schema (models.py), the pure comparison of what a stage wants with what
is found (diff.py), and the table and markdown views (render.py, which imports Prefect
only to publish the artifact). No AWS here: the reads are the stage rooms' `plan`
(tasks/deploy/stages/) and the finders in tasks/aws/."""

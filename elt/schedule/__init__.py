"""Schedules and triggers: when pipelines run without anyone typing `elt run`.

| module | concern |
|---|---|
| `cron` | cron expressions in a time zone: parse, slots between two instants, next/previous, in words |
| `model` | `schedules:` and `triggers:` of elt.yml as `Schedule` / `Trigger` values; checks for validate |
| `store` | fired slots and trigger events, first sightings, scheduler heartbeats in the system database |
| `launch` | a run in a process of its own, under an id its starter chose (`python -m elt.schedule.launch`) |
| `watch` | the files of a file trigger (local glob or S3 prefix) with fingerprints |
| `scheduler` | the `elt scheduler` loop: clocks, due slots, catchup, triggers, leases, stopping on SIGTERM |
| `fire` | `run_schedule` (`elt schedule run`) and `fire_trigger` (`elt trigger fire`, the API's webhooks) |
| `status` | what `elt schedule list` and `elt trigger list` show |
| `export` | crontab, GitHub Actions and systemd files that run the schedules |

docs/schedules.md describes the YAML and the behaviour. Nothing is imported here: `elt validate` imports
`model`, and must stay quick.
"""

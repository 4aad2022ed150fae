"""Scheduled runs: a batch template fired by a cron line, inside the Scrapyd service.

:mod:`~batchscraper.schedules.timing` turns a cron line and a time zone into
ticks (cronsim for cron, zoneinfo for zones and DST);
:mod:`~batchscraper.schedules.spec` checks what a client sends;
:mod:`~batchscraper.schedules.store` keeps schedules in MongoDB;
:mod:`~batchscraper.schedules.scheduler` decides what each due tick does
(run, skip, wait, drop) and makes its batch, with a unique key on
(schedule, tick) written with the batch document itself.
"""

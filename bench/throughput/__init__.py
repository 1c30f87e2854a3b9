"""End-to-end throughput: mdm.<region>.upload -> durable rows in the region store, against a
raw baseline on the same bytes, with one and with two pipeline workers of the same region.

    python -m bench.throughput [--n 1000000] [--region eu] [--workers 1,2] [--profile]

The load: N upload records (kinds U1..U14 in bench.support.UPLOAD_MIX proportions) of
--tenants fresh tenants, all of ONE region (--region), so that every worker of a run is a
worker of that region and they share its partitions (scale-out as the design has it: a
region's pipeline group, mdmbus-<region>-pipeline, spreads the region's partitions over its
workers). The tenants are in the tenant directory and the region's ``tenants`` table. The
messages are built once, in memory, and produced anew before each run: the pipeline truncates
what it has committed (DeleteRecords), so a topic cannot be drained twice.

1. produce (bench.throughput.produce): the N messages to mdm.<region>.upload, before any
   worker runs.
2. baselines (bench.throughput.baselines), on the same bytes and machine: consume-only
   (aiokafka getmany of the produced messages, no decoding) and the consume -> COPY loop, both
   before the first drain (they read the topic); COPY-only: the rows the pipeline would store,
   built before timing, COPYed into a scratch table shaped like ``records`` (same columns,
   defaults and indexes) in the region's database, one transaction per MDMBUS_BATCH_SIZE.
   baseline = min(consume-only, COPY-only): an ideal pipeline whose two stages overlap fully.
3. drain (bench.throughput.drain): points the region's pipeline group at the first produced
   message, starts W workers (`mdmbus process pipeline --region R`, through the one launcher)
   and waits until the group has committed everything; the rate is taken from the store (rows
   stored / first to last stored_at_real; the p10-p90 rate beside it). For each W of
   --workers (default 1,2) the rows of the previous run are deleted, the table vacuumed and
   the messages produced again. CPU is metered from the first commit to the last for every
   worker, the PostgreSQL backends and the broker. With --sealing on,off (the default) each
   W is drained twice: as mdmbus runs (every body sealed under a data key of its own) and with
   bodies stored in clear (bench.unsealed: a benchmark-only wrapper of the worker; mdmbus has
   no such setting). Two drains differ by more than the seal's few microseconds a record from
   noise alone, so after the drains the seal itself is timed in this process on --seal-n of
   the load's rows (bench.throughput.seal: sealed_record_tuples against the same rows in
   clear, best of --seal-rounds) and reported as a share of the sealed drain's worker CPU a
   record: sealing's cost measured in the same run (target: under 10 %).
4. --profile (bench.throughput.profile): one more run, one worker under cProfile (through
   Launcher.start(prefix=...)) on the last --profile-n messages, and a summary of where its
   main thread's time goes. Before the drains (their rows deleted before the first one, so
   --keep leaves the last drain's rows), --stages (default 20,000): the pipeline's own batch
   steps timed one by one in this process (BatchTemplate.prepare: decode + validate;
   .process: route + idempotent write + metrics).
5. report (bench.throughput.report): records/s and the ratio to the baseline for each run
   (targets: >= 0.4 with one worker, >= 0.5 with two), CPU microseconds per record summed
   over every process beside the baseline's, where it goes, and n workers estimated from the
   CPU per record ("measured on paper").

The rows, tenants and scratch tables of the run are deleted at the end (--keep leaves them).
"""

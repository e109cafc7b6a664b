-- Failed generations by reason: outputs that stayed invalid after the retries (they never reach
-- gold), per task, generator and reason, with the run dates they occurred on.
-- Run: precis sql -f sql/failed_generations_by_reason.sql
select
    task,
    model_id,
    adapter_version,
    regexp_replace(reason, '[0-9]+', 'N', 'g')   as reason,
    count(*)                                     as failures,
    min(ds)                                      as first_ds,
    max(ds)                                      as last_ds,
    any_value(left(raw_output, 80))              as example_output
from silver.generation_failures
group by all
order by failures desc, task;

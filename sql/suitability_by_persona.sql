-- Suitability distribution per persona (SUMFORU): for each shopper persona, how the 1-10
-- suitability scores of its persona-aware review summaries are spread. A persona whose
-- scores are all the same value is a sign the scorer is not discriminating.
-- Run: precis sql -f sql/suitability_by_persona.sql
select
    s.user_id,
    left(p.persona, 80)                      as persona,
    s.adapter_version,
    count(*)                                 as summaries,
    min(s.suitability)                       as min_suitability,
    round(avg(s.suitability), 2)             as mean_suitability,
    max(s.suitability)                       as max_suitability,
    count(*) filter (where s.suitability <= 3)                      as low_1_3,
    count(*) filter (where s.suitability between 4 and 7)           as mid_4_7,
    count(*) filter (where s.suitability >= 8)                      as high_8_10
from gold.persona_summaries s
left join gold.personas p
  on p.user_id = s.user_id and p.model_id = s.model_id and p.adapter_version = s.adapter_version
group by s.user_id, p.persona, s.adapter_version
order by summaries desc, s.user_id;

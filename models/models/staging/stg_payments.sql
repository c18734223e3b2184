-- One row per payment; amounts become exact decimals so that they add up to order totals.
with versions as (
    {{ latest_version(source('tap_files', 'payments'), 'payment_id', '_elt_synced_at desc') }}
)

select
    cast(payment_id as {{ dbt.type_bigint() }}) as payment_id,
    cast(order_id as {{ dbt.type_bigint() }}) as order_id,
    cast(lower(method) as {{ dbt.type_string() }}) as payment_method,
    cast(amount as decimal(18, 2)) as amount,
    cast(paid_at as timestamp with time zone) as paid_at,
    cast(_elt_synced_at as timestamp with time zone) as synced_at
from versions

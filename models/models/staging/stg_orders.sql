-- One row per order: the latest status synced.
with versions as (
    {{ latest_version(source('tap_files', 'orders'), 'order_id', 'updated_at desc, _elt_synced_at desc') }}
)

select
    cast(order_id as {{ dbt.type_bigint() }}) as order_id,
    cast(customer_id as {{ dbt.type_bigint() }}) as customer_id,
    cast(lower(status) as {{ dbt.type_string() }}) as order_status,
    cast(ordered_at as timestamp with time zone) as ordered_at,
    cast(updated_at as timestamp with time zone) as updated_at,
    cast(_elt_synced_at as timestamp with time zone) as synced_at
from versions

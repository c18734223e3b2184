-- One row per order line. Items are never updated, so a re-synced line is a plain duplicate.
with versions as (
    {{ latest_version(source('tap_files', 'order_items'), 'order_item_id', '_elt_synced_at desc') }}
)

select
    cast(order_item_id as {{ dbt.type_bigint() }}) as order_item_id,
    cast(order_id as {{ dbt.type_bigint() }}) as order_id,
    cast(product_id as {{ dbt.type_bigint() }}) as product_id,
    cast(quantity as {{ dbt.type_int() }}) as quantity,
    cast(unit_price as decimal(18, 2)) as unit_price,
    cast(quantity * cast(unit_price as decimal(18, 2)) as decimal(18, 2)) as line_total,
    cast(_elt_synced_at as timestamp with time zone) as synced_at
from versions

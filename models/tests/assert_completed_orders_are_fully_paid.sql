-- A completed order's payments add up to exactly its total. Returns the orders where they do not.
select
    order_id,
    order_total,
    amount_paid
from {{ ref('fct_orders') }}
where order_status = 'completed'
  and order_total <> amount_paid

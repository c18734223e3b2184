"""tap-mysql: the built-in Singer tap for MySQL and MariaDB tables and views."""

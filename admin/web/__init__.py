"""The admin web page: one HTML shell and a little vanilla JS talking to the admin API."""

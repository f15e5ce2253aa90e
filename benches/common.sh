# Shell helpers shared by the benchmark scripts (sourced by them, not run on its own).

# Wait until something listens on 127.0.0.1:$1, checking every 0.1 s at most $2 times
# (default 100: 10 s); return 1 if nothing does.
wait_listening() {
    for _ in $(seq "${2:-100}"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Write an nginx config in directory $1/nginx for $2 workers on 127.0.0.1:$3 that answers
# every request with "Hello, world!\n" (access log off, keep-alive for as long as the
# client likes); $4, if given, adds main-context directives (e.g. "master_process off;").
# Prints the config's path.
nginx_conf_in() {
    local dir=$1/nginx
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<CONF
worker_processes $2;
${4:-}
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$3 reuseport;
        location / {
            default_type text/plain;
            return 200 "Hello, world!\n";
        }
    }
}
CONF
    echo "$dir/nginx.conf"
}

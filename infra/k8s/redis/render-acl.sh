#!/bin/sh
# Renders Redis's ACL file: the rules (users.acl) with each `>@password@` replaced by the SHA-256
# of that user's password, read from a directory holding one file per user (the Secret
# orderly-redis-users mounted as a volume). Fails on a user without a password or with one that
# would not survive a redis:// URL unescaped.
#
#   render-acl.sh RULES SECRETS_DIR OUTPUT
set -eu
rules="$1" secrets="$2" output="$3"
marker='>@password@'
tmp="$output.tmp"
umask 077
: >"$tmp"
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    user\ *"$marker"*)
      user=$(printf '%s\n' "$line" | cut -d' ' -f2)
      if [ ! -s "$secrets/$user" ]; then
        echo "render-acl: no password for Redis user $user in $secrets" >&2
        exit 1
      fi
      password=$(cat "$secrets/$user")
      case "$password" in
        *[!A-Za-z0-9_-]*)
          echo "render-acl: the password of $user must be letters, digits, '-' and '_' only" >&2
          exit 1
          ;;
      esac
      hash=$(printf '%s' "$password" | sha256sum | cut -d' ' -f1)
      printf '%s#%s%s\n' "${line%%"$marker"*}" "$hash" "${line#*"$marker"}" >>"$tmp"
      ;;
    user\ *) printf '%s\n' "$line" >>"$tmp" ;;
    *) ;; # comments and blank lines
  esac
done <"$rules"
mv "$tmp" "$output"
echo "render-acl: $(grep -c '^user ' "$output") users" >&2

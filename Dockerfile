# demls-node image: nothing but the statically linked binary (built by
# scripts/build-image.sh; no image is pulled, so the base is `scratch`).
FROM scratch
COPY demls-node /demls-node
# An empty data directory owned by the runtime user, so named volumes start writable.
COPY --chown=10001:10001 data/ /data/
COPY testnet.toml /etc/demls/node.toml
USER 10001:10001
EXPOSE 60000 8645
ENTRYPOINT ["/demls-node"]
CMD ["run", "--config", "/etc/demls/node.toml"]

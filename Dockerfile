# Faro's image for those who build with Docker; `make image` builds the
# same image without a daemon (hack/image).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/faro ./cmd/faro && \
    for p in changelog notify image-policy; do \
      GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -o /out/plugins/$p.wasm ./plugins/examples/$p || exit 1; \
    done

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/faro /faro
COPY --from=build /out/plugins/ /plugins/
# wazero's compilation cache: mount a volume here (deploy/ uses an emptyDir).
ENV XDG_CACHE_HOME=/var/cache
USER 65532:65532
ENTRYPOINT ["/faro"]
